"""Model-pack manifests: a YAML file naming the detectors, their checkpoints and how to fuse them.

Pure (yaml + dataclasses, no torch) so the API can read a pack without loading any model.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from core.crop_spec import CONVENTIONS
from core.preprocessing import NAMED, Normalisation
from core.settings import WEIGHTS_DIR_ENV, weights_dir_from_env
from core.vocabulary import FUSION_METHODS

_AGGREGATOR = re.compile(r"mean|max|confident|topk:[1-9]\d*|softmax:\d+(\.\d+)?")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(ValueError):
    """A pack manifest is missing, unreadable or invalid; the message says which field and why."""


@dataclass(frozen=True)
class ProbeCheck:
    """The logits the member gave on the fixed probe input when it was imported (models.loading.probe_input)."""

    logits: tuple[tuple[float, ...], ...]
    tolerance: float


@dataclass(frozen=True)
class MemberManifest:
    name: str
    format: str  # models.formats key, e.g. "meso4", "deepfakebench_xception"
    checkpoint: str  # file name relative to the weights dir
    sha256: str | None  # None: not pinned (a shipped pack for public files); the loader logs the actual one
    input_size: int | None  # None: the format's own
    aggregator: str  # "mean" | "max" | "topk:K" | "softmax:BETA" | "confident"
    weight: float
    options: dict[str, Any] = field(default_factory=dict)  # architecture kwargs (tiny test configs)
    crop: str | None = None  # a core.crop_spec convention overriding the format's
    normalisation: Normalisation | None = None  # overrides the format's
    check: ProbeCheck | None = None


@dataclass(frozen=True)
class FusionManifest:
    method: str  # one of FUSION_METHODS
    t_low: float
    t_high: float
    min_models: int
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class PackManifest:
    name: str
    version: str
    test_pack: bool
    description: str
    weights_dir: str | None  # relative to the manifest file; VERITY_WEIGHTS_DIR or a caller may override
    members: tuple[MemberManifest, ...]
    fusion: FusionManifest


class _Fields:
    """Typed, strict access to one YAML mapping: unknown keys and wrong types are errors with a path."""

    def __init__(self, raw: object, where: str) -> None:
        if not isinstance(raw, dict):
            raise ManifestError(f"{where}: expected a mapping, got {type(raw).__name__}")
        self.raw: dict[str, Any] = raw
        self.where = where
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if default is ...:
                raise ManifestError(f"{self.where}: missing required field '{key}'")
            return default
        value = self.raw[key]
        # bool is an int subclass; a YAML `true` must not pass as a number.
        if not isinstance(value, kind) or (isinstance(value, bool) and bool not in _as_tuple(kind)):
            raise ManifestError(f"{self.where}.{key}: expected {_type_names(kind)}, got {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise ManifestError(f"{self.where}: unknown field(s) {unknown}")


def _as_tuple(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _type_names(kind: type | tuple[type, ...]) -> str:
    return " or ".join(t.__name__ for t in _as_tuple(kind))


def _member(raw: object, index: int) -> MemberManifest:
    f = _Fields(raw, f"members[{index}]")
    name = f.get("name", str)
    f.where = f"members[{index}] ({name})"
    checkpoint = f.get("checkpoint", str)
    path = PurePosixPath(checkpoint)
    if not checkpoint or path.is_absolute() or ".." in path.parts:
        raise ManifestError(f"{f.where}.checkpoint: must be a path inside the weights dir, got {checkpoint!r}")
    # Required, but may be null for a public release whose bytes Verity cannot know in advance (the shipped
    # packs); the loader then logs the file's sha256 so the operator can pin it.
    sha256 = f.get("sha256", (str, type(None)))
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise ManifestError(f"{f.where}.sha256: expected 64 lowercase hex digits, got {sha256!r}")
    input_size = f.get("input_size", (int, type(None)), None)
    if input_size is not None and input_size <= 0:
        raise ManifestError(f"{f.where}.input_size: must be positive, got {input_size}")
    aggregator = f.get("aggregator", str)
    if not _AGGREGATOR.fullmatch(aggregator):
        raise ManifestError(
            f"{f.where}.aggregator: expected mean, max, confident, topk:K or softmax:BETA, got {aggregator!r}"
        )
    weight = float(f.get("weight", (int, float), 1.0))
    if weight < 0:
        raise ManifestError(f"{f.where}.weight: must be >= 0, got {weight}")
    fmt = f.get("format", str, None)
    legacy = f.get("architecture", str, None)  # the field's name before formats existed
    if (fmt is None) == (legacy is None):
        raise ManifestError(f"{f.where}: give exactly one of 'format' (or its old name 'architecture')")
    crop = f.get("crop", (str, type(None)), None)
    if crop is not None and crop not in CONVENTIONS:
        raise ManifestError(f"{f.where}.crop: unknown crop convention {crop!r}; known: {sorted(CONVENTIONS)}")
    member = MemberManifest(
        name=name,
        format=fmt or legacy,
        checkpoint=checkpoint,
        sha256=sha256,
        input_size=input_size,
        aggregator=aggregator,
        weight=weight,
        options=dict(f.get("options", dict, {})),
        crop=crop,
        normalisation=_normalisation(f.get("normalisation", (str, dict, type(None)), None), f"{f.where}.normalisation"),
        check=_check(f.get("check", (dict, type(None)), None), f"{f.where}.check"),
    )
    f.finish()
    return member


def _normalisation(raw: str | dict[str, Any] | None, where: str) -> Normalisation | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if raw not in NAMED:
            raise ManifestError(f"{where}: unknown normalisation {raw!r}; known: {sorted(NAMED)} or {{mean, std}}")
        return NAMED[raw]
    f = _Fields(raw, where)
    mean, std = f.get("mean", list), f.get("std", list)
    f.finish()
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (*mean, *std)):
        raise ManifestError(f"{where}: mean and std must be numbers")
    try:
        return Normalisation(tuple(float(v) for v in mean), tuple(float(v) for v in std))  # type: ignore[arg-type]
    except ValueError as exc:
        raise ManifestError(f"{where}: {exc}") from None


def _check(raw: dict[str, Any] | None, where: str) -> ProbeCheck | None:
    if raw is None:
        return None
    f = _Fields(raw, where)
    rows = f.get("logits", list)
    tolerance = float(f.get("tolerance", (int, float)))
    f.finish()
    if not rows or not all(
        isinstance(row, list) and row and all(isinstance(v, (int, float)) and math.isfinite(v) for v in row)
        for row in rows
    ):
        raise ManifestError(f"{where}.logits: expected a non-empty list of lists of finite numbers")
    if not 0 < tolerance < 1:
        raise ManifestError(f"{where}.tolerance: must be in (0, 1), got {tolerance}")
    return ProbeCheck(tuple(tuple(float(v) for v in row) for row in rows), tolerance)


def _fusion(raw: object, n_members: int) -> FusionManifest:
    f = _Fields(raw, "fusion")
    method = f.get("method", str)
    if method not in FUSION_METHODS:
        raise ManifestError(f"fusion.method: expected one of {FUSION_METHODS}, got {method!r}")
    t_low = float(f.get("t_low", (int, float)))
    t_high = float(f.get("t_high", (int, float)))
    if not 0.0 <= t_low <= t_high <= 1.0:
        raise ManifestError(f"fusion: need 0 <= t_low <= t_high <= 1, got t_low={t_low}, t_high={t_high}")
    min_models = f.get("min_models", int)
    if not 1 <= min_models <= n_members:
        raise ManifestError(f"fusion.min_models: must be between 1 and {n_members}, got {min_models}")
    fusion = FusionManifest(method, t_low, t_high, min_models, dict(f.get("params", dict, {})))
    f.finish()
    return fusion


def parse_manifest(raw: object, where: str = "manifest") -> PackManifest:
    """Validate an already-parsed YAML document."""
    f = _Fields(raw, where)
    raw_members = f.get("members", list)
    if not raw_members:
        raise ManifestError(f"{where}.members: a pack needs at least one member")
    members = tuple(_member(m, i) for i, m in enumerate(raw_members))
    names = [m.name for m in members]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ManifestError(f"{where}.members: duplicate member names {duplicates}")
    manifest = PackManifest(
        name=f.get("name", str),
        version=str(f.get("version", (str, int, float))),
        test_pack=f.get("test_pack", bool, False),
        description=f.get("description", str, ""),
        weights_dir=f.get("weights_dir", (str, type(None)), None),
        members=members,
        fusion=_fusion(f.get("fusion", dict), len(members)),
    )
    f.finish()
    return manifest


def read_manifest(path: Path) -> PackManifest:
    """Read and validate a pack manifest; raises ManifestError naming the file and the problem."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"cannot read pack manifest {path}: {exc}") from exc
    try:
        return parse_manifest(raw)
    except ManifestError as exc:
        raise ManifestError(f"{path}: {exc}") from None


def resolve_weights_dir(manifest_path: Path, manifest: PackManifest, override: Path | None = None) -> Path:
    """The weights folder: the caller's override, else $VERITY_WEIGHTS_DIR, else the manifest's own."""
    return weights_dir_for(manifest_path, manifest.weights_dir, override)


def weights_dir_for(manifest_path: Path, declared: str | None, override: Path | None = None) -> Path:
    if override is not None:
        return Path(override)
    from_env = weights_dir_from_env()
    if from_env is not None:
        return from_env
    if declared is None:
        raise ManifestError(f"{manifest_path}: no weights_dir in the manifest and {WEIGHTS_DIR_ENV} is not set")
    return (Path(manifest_path).parent / declared).resolve()


def missing_checkpoints(manifest_path: Path, weights_dir: Path | None = None) -> list[Path]:
    """The members' checkpoint files that are not in the weights folder (no torch: for start-up checks)."""
    manifest = read_manifest(manifest_path)
    root = resolve_weights_dir(manifest_path, manifest, weights_dir)
    return [root / m.checkpoint for m in manifest.members if not (root / m.checkpoint).is_file()]
