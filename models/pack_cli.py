"""`verity-pack` (also `./verity pack`): bring your own checkpoint into a pack, check a pack, list formats.

    verity-pack formats
    verity-pack import FORMAT CHECKPOINT --pack PACK.yaml [--name N] [--weight W] [--aggregator A] [--options JSON]
    verity-pack check PACK.yaml [--weights-dir DIR]
    verity-pack convert-pickle SRC DST      (offline, for a whole pickled module from a source you trust)

Exit status: 0 done, 1 refused (the message says why), 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from core.manifest import ManifestError, parse_manifest, read_manifest, resolve_weights_dir, weights_dir_for
from core.preprocessing import normalisation_name
from models.checkpoint import CheckpointError
from models.convert import convert_pickled_module
from models.formats import CheckpointFormat, UnknownFormatError, formats, get_format
from models.integrity import ChecksumError, sha256_file
from models.loading import DEFAULT_PROBE_TOLERANCE, build, check_identity, load_weights, probe_logits
from models.pack import load_member


class Refused(Exception):
    """A pack command cannot do what it was asked; the message is for the operator."""


@dataclass(frozen=True)
class Imported:
    member: dict[str, Any]
    copied_to: Path | None
    probe: list[list[float]]


def describe(fmt: CheckpointFormat) -> str:
    return (
        f"{fmt.name}: {fmt.source}; input {fmt.input_size} px, normalisation {normalisation_name(fmt.normalisation)}, "
        f"crop {fmt.crop.name}, output {fmt.output.kind}"
        + (f" (class {fmt.output.fake_index} = FAKE)" if fmt.output.kind == "softmax" else "")
    )


def _new_pack(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": "1",
        "test_pack": False,
        "description": "Created by verity-pack import.",
        "weights_dir": ".",
        "members": [],
        # PROVISIONAL, UNCALIBRATED: fit real thresholds from moderator feedback (recalibration).
        "fusion": {"method": "weighted_average", "t_low": 0.35, "t_high": 0.65, "min_models": 1},
    }


def import_checkpoint(
    format_name: str,
    checkpoint: Path,
    pack: Path,
    name: str | None = None,
    weight: float = 1.0,
    aggregator: str = "mean",
    options: dict[str, Any] | None = None,
) -> Imported:
    """Load `checkpoint` as `format_name` on CPU (safe read, adapt, strict load, identity), record its probe
    logits and add (or replace) the member in `pack`, creating the pack if it does not exist."""
    try:
        fmt = get_format(format_name)
    except UnknownFormatError as exc:
        raise Refused(str(exc)) from None
    if not checkpoint.is_file():
        raise Refused(f"no such checkpoint file: {checkpoint}")
    raw = yaml.safe_load(pack.read_text(encoding="utf-8")) if pack.exists() else _new_pack(pack.stem)
    member_name = name or fmt.name
    try:
        model = build(fmt, None, options or {})
        load_weights(fmt, model, checkpoint)
        check_identity(fmt, model)
    except (CheckpointError, ValueError) as exc:
        raise Refused(f"{checkpoint.name} does not load as {fmt.name}: {exc}") from None
    probe = probe_logits(model, fmt.normalisation, fmt.input_size).round(7).tolist()
    weights_dir = weights_dir_for(pack, raw.get("weights_dir"))
    target = weights_dir / checkpoint.name
    copied_to = None
    if target.resolve() != checkpoint.resolve():
        if target.exists():
            raise Refused(f"{target} exists already and is another file; rename the checkpoint or remove it")
        weights_dir.mkdir(parents=True, exist_ok=True)
        _link_or_copy(checkpoint, target)
        copied_to = target
    member = {
        "name": member_name,
        "format": fmt.name,
        "checkpoint": checkpoint.name,
        "sha256": sha256_file(target),
        "input_size": fmt.input_size,
        "normalisation": normalisation_name(fmt.normalisation),
        "crop": fmt.crop.name,
        "aggregator": aggregator,
        "weight": weight,
        **({"options": options} if options else {}),
        "check": {"logits": probe, "tolerance": DEFAULT_PROBE_TOLERANCE},
    }
    raw["members"] = [m for m in raw["members"] if m.get("name") != member_name] + [member]
    try:
        parse_manifest(raw, where=str(pack))
    except ManifestError as exc:
        raise Refused(f"the pack would be invalid: {exc}") from None
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return Imported(member, copied_to, probe)


def _link_or_copy(source: Path, target: Path) -> None:
    # Checkpoints run to gigabytes: a hard link costs nothing where both sit on one file system.
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def check_pack(pack: Path, weights_dir: Path | None = None) -> list[tuple[str, str | None]]:
    """Load every member on CPU exactly as a worker would; (name, None) when it passed, else (name, why)."""
    manifest = read_manifest(pack)
    root = resolve_weights_dir(pack, manifest, weights_dir)
    results: list[tuple[str, str | None]] = []
    for member in manifest.members:
        try:
            load_member(member, root, device="cpu", batch_size=8)
        except (OSError, ValueError, LookupError, CheckpointError, ChecksumError) as exc:
            results.append((member.name, f"{type(exc).__name__}: {exc}"))
        else:
            results.append((member.name, None))
    return results


def _print_import(result: Imported, fmt: CheckpointFormat, pack: Path) -> None:
    m = result.member
    print(f"imported {m['checkpoint']} as {m['name']} into {pack}")
    print(f"  format     {describe(fmt)}")
    print(f"  sha256     {m['sha256']}")
    if result.copied_to:
        print(f"  stored as  {result.copied_to}")
    print(f"  probe      logits {result.probe} (compared again whenever the pack loads)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verity-pack", description="Model packs: import, check, formats.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("formats", help="list the checkpoint formats Verity runs")
    imp = sub.add_parser("import", help="add a checkpoint to a pack (created if missing)")
    imp.add_argument("format")
    imp.add_argument("checkpoint", type=Path)
    imp.add_argument("--pack", type=Path, required=True)
    imp.add_argument("--name")
    imp.add_argument("--weight", type=float, default=1.0)
    imp.add_argument("--aggregator", default="mean")
    imp.add_argument("--options", type=json.loads, help="builder arguments as JSON, for a non-standard configuration")
    chk = sub.add_parser("check", help="load every member of a pack as a worker would, without running a job")
    chk.add_argument("pack", type=Path)
    chk.add_argument("--weights-dir", type=Path)
    conv = sub.add_parser("convert-pickle", help="offline: a whole pickled module you trust -> a plain state dict")
    conv.add_argument("source", type=Path)
    conv.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "formats":
            for name in formats():
                print(describe(get_format(name)))
            return 0
        if args.command == "import":
            result = import_checkpoint(
                args.format, args.checkpoint, args.pack, args.name, args.weight, args.aggregator, args.options
            )
            _print_import(result, get_format(args.format), args.pack)
            return 0
        if args.command == "check":
            results = check_pack(args.pack, args.weights_dir)
            for name, why in results:
                print(f"{'ok    ' if why is None else 'FAILED'} {name}" + (f": {why}" if why else ""))
            return 0 if all(why is None for _, why in results) else 1
        converted = convert_pickled_module(args.source, args.target)
        print(f"wrote {converted.dst} ({converted.n_tensors} tensors from a pickled {converted.top_level_class})")
        print(f"  sha256 {converted.sha256}")
        return 0
    except (Refused, ManifestError, CheckpointError, OSError) as exc:
        print(f"verity-pack: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
