"""Load a model pack: verify each checkpoint's sha256, build its architecture, load weights strictly."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from core.crop_spec import crop_convention
from core.manifest import MemberManifest, PackManifest, read_manifest, resolve_weights_dir
from models.detector import Detector, TorchDetector
from models.formats import get_format
from models.integrity import sha256_file, verify_sha256
from models.loading import build, check_identity, load_weights, probe_logits, verify_probe

log = logging.getLogger(__name__)


class PackLoadError(RuntimeError):
    """No member of a pack could be loaded."""


@dataclass
class LoadedMember:
    manifest: MemberManifest
    detector: Detector


@dataclass
class LoadedPack:
    manifest: PackManifest
    members: list[LoadedMember]
    load_seconds: dict[str, float]
    failed: dict[str, str]  # member name -> why it did not load


def load_member(member: MemberManifest, weights_dir: Path, device: str, batch_size: int) -> TorchDetector:
    """Build one member's detector; raises on a missing file, checksum mismatch or misfitting checkpoint."""
    path = weights_dir / member.checkpoint
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if member.sha256 is None:
        log.warning(
            "%s: the manifest pins no sha256; loading %s (sha256 %s) on its format's checks alone",
            member.name,
            path,
            sha256_file(path),
        )
    else:
        verify_sha256(path, member.sha256)
    fmt = get_format(member.format)
    model = build(fmt, member.input_size, member.options)
    load_weights(fmt, model, path)
    check_identity(fmt, model)
    size = member.input_size or fmt.input_size
    normalisation = member.normalisation or fmt.normalisation
    crop = crop_convention(member.crop) if member.crop else fmt.crop
    detector = TorchDetector(member.name, model, size, normalisation, fmt.output, device, batch_size, crop=crop)
    if member.check is not None:
        verify_probe(member.name, member.check, probe_logits(detector.model, normalisation, size))
    return detector


def load_pack(
    manifest_path: Path, weights_dir: Path | None = None, device: str = "cpu", batch_size: int = 32
) -> LoadedPack:
    """Load every member of a pack; members that fail are recorded in `failed`, and if none loads, raise.

    weights_dir defaults to $VERITY_WEIGHTS_DIR, then to the manifest's weights_dir (relative to the file).
    """
    manifest = read_manifest(manifest_path)
    root = resolve_weights_dir(manifest_path, manifest, weights_dir)
    loaded: list[LoadedMember] = []
    seconds: dict[str, float] = {}
    failed: dict[str, str] = {}
    for member in manifest.members:
        start = time.perf_counter()
        try:
            detector = load_member(member, root, device, batch_size)
        # One broken member must not take the pack down: record why and let the pipeline decide
        # whether enough members remain (fusion.min_models).
        except Exception as exc:
            failed[member.name] = f"{type(exc).__name__}: {exc}"
            log.error("model %s failed to load: %s", member.name, failed[member.name])
            continue
        seconds[member.name] = time.perf_counter() - start
        loaded.append(LoadedMember(member, detector))
    if not loaded:
        reasons = "; ".join(f"{name}: {why}" for name, why in failed.items())
        raise PackLoadError(f"no member of pack {manifest.name!r} loaded from {root}: {reasons}")
    return LoadedPack(manifest, loaded, seconds, failed)
