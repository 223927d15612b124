"""``verity heatmaps JOB``: list a finished job's heatmaps (explain=true jobs) and download the PNGs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from client.api import VerityClient
from client.output import EXIT_OK, Output
from client.types import HeatmapListJson


def describe_heatmaps(listing: HeatmapListJson, saved: dict[str, Path]) -> str:
    lines = []
    for h in listing["heatmaps"]:
        where = h["error"] if h["url"] is None else str(saved.get(h["url"], h["url"]))
        lines.append(f"{h['member']}  frame {h['frame_index']} ({h['timestamp_s']:.2f} s)  {h['score']:.3f}  {where}")
    return "\n".join(lines) or "no heatmaps: submit the job with --explain"


def cmd_heatmaps(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    listing = client.heatmaps(args.job_id)
    saved: dict[str, Path] = {}
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        for n, h in enumerate(listing["heatmaps"]):
            if h["url"] is not None:
                saved[h["url"]] = args.out / f"{n:02d}-{h['member']}-frame{h['frame_index']}.png"
                saved[h["url"]].write_bytes(client.heatmap_png(h["url"]))
    out.emit(listing, lambda: describe_heatmaps(listing, saved))
    return EXIT_OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``heatmaps`` subcommand's arguments."""
    p = sub.add_parser("heatmaps", parents=[common], help="a finished job's heatmaps; download the PNGs")
    p.add_argument("job_id")
    p.add_argument("--out", type=Path, help="save each PNG in this folder")
