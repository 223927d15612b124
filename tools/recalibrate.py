"""Calibration versions from the command line: fit, list, show, activate / roll back, replay a job, the picture.

Command: ``python -m tools.recalibrate fit|list|show V|activate V|replay JOB_ID [--version V]|png V``. The
fit's flags are the VERITY_RECAL_* knobs (``core.scoring.recalibration_config``); unset, the settings' values.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.pack_defaults import pack_defaults
from core.plots import reliability_png
from core.scoring.recalibration_config import KNOBS
from core.scoring.recalibration_types import NotEnoughLabels
from core.scoring.replay import ReplayError
from core.settings import get_settings
from core.vocabulary import FUSION_METHODS
from db import calibrations
from db.calibrations import CalibrationNotFound, sql_store
from db.session import session_scope


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _parse_aggregators(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise SystemExit(f"--aggregator takes MODEL=SPEC, got {item!r}")
        out[name] = spec
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.recalibrate", description=(__doc__ or "").split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_fit = sub.add_parser("fit", help="fit a new candidate version from the current feedback")
    for name, knob in KNOBS:
        choices = FUSION_METHODS if name == "fusion_method" else None
        p_fit.add_argument(knob.flag, dest=name, type=knob.kind, choices=choices, help=f"{knob.help} ({knob.env})")
    p_fit.add_argument("--auto-activate", action="store_true", help="activate it if the held-out metrics are better")
    sub.add_parser("list", help="list the versions, newest first")
    p_show = sub.add_parser("show", help="one version in full")
    p_show.add_argument("version")
    p_act = sub.add_parser("activate", help="activate a version (activating an earlier one is the rollback)")
    p_act.add_argument("version")
    p_replay = sub.add_parser("replay", help="re-score a stored job under a version, without the GPU")
    p_replay.add_argument("job_id")
    p_replay.add_argument("--version", help="a version, or 'none' (default: the job's own)")
    p_replay.add_argument("--method", choices=FUSION_METHODS)
    p_replay.add_argument("--aggregator", action="append", default=[], metavar="MODEL=SPEC")
    p_png = sub.add_parser("png", help="write a version's reliability diagram")
    p_png.add_argument("version")
    p_png.add_argument("-o", "--output", required=True)
    return parser


def _run(args: argparse.Namespace) -> None:
    settings = get_settings()
    pack = pack_defaults(settings.pack_manifest)
    if args.command == "fit":
        config = settings.recalibration.with_overrides(**{name: getattr(args, name) for name, _ in KNOBS})
        _print(calibrations.fit(sql_store, pack, config, auto_activate=args.auto_activate))
    elif args.command == "list":
        _print(calibrations.list_versions(sql_store))
    elif args.command == "show":
        _print(calibrations.get_version(sql_store, args.version, full=True))
    elif args.command == "activate":
        _print(calibrations.activate(sql_store, args.version, by="command line"))
    elif args.command == "replay":
        with session_scope() as session:
            aggregators = _parse_aggregators(args.aggregator)
            _print(calibrations.replay(session, pack, args.job_id, args.version, args.method, aggregators))
    elif args.command == "png":
        metrics = calibrations.get_version(sql_store, args.version, full=True)["metrics"]
        Path(args.output).write_bytes(reliability_png(args.version, metrics))
        print(args.output)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        _run(args)
    except (NotEnoughLabels, CalibrationNotFound, ReplayError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
