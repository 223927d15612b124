"""``verity-scan VIDEO``: run the detection pipeline on one local file, no services needed.

Prints a per-model and a per-track table and the verdict with its thresholds, and writes a timeline PNG of
the per-frame scores. Settings come from the environment (VERITY_PACK, VERITY_WEIGHTS_DIR, ...) unless the
options override them. Exit status: 0 with a verdict (NO_FACE included), 2 for a video Verity refuses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

from core.media.errors import MediaError
from core.plots import timeline_png
from core.results import JobResult
from core.settings import Settings, load_settings
from workers.pipeline import run_pipeline
from workers.resources import load_resources

TEST_PACK_BANNER = (
    "!" * 78 + "\n!!  TEST-ONLY PACK: random weights. These scores are NOT a deepfake detection.  !!\n" + "!" * 78
)


def tool_settings(pack: Path | None, frames: int | None, downscale: float | None = None) -> Settings:
    """The environment's settings with the command-line overrides applied (shared with verity-evaluate)."""
    settings = load_settings()
    overrides: dict[str, Any] = {}
    if pack is not None:
        overrides["pack_manifest"] = pack
    if frames is not None:
        overrides["max_frames"] = frames
    if downscale is not None:
        overrides["face_downscale"] = downscale
    return dataclasses.replace(settings, **overrides)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def print_models(result: JobResult, out: TextIO) -> None:
    print(f"{'model':<24}{'aggregator':<14}{'frames':>7}{'aggregated':>12}{'calibrated':>12}{'weight':>8}", file=out)
    for name, m in result.per_model.items():
        if m.error:
            print(f"{name:<24}{m.aggregator:<14}  FAILED: {m.error}", file=out)
            continue
        print(
            f"{name:<24}{m.aggregator:<14}{m.frames:>7}{_fmt(m.aggregated):>12}{_fmt(m.calibrated):>12}{m.weight:>8.2f}",
            file=out,
        )


def print_tracks(result: JobResult, out: TextIO) -> None:
    models = list(result.per_model)
    header = f"{'track':>6} {'faces':>6}{'first':>7}{'last':>7}{'fused':>9}  " + "".join(f"{m:>18}" for m in models)
    print(header.rstrip(), file=out)
    for track in result.tracks.tracks:
        frames = [d.frame_index for d in track.detections]
        marker = "*" if track.track_id == result.tracks.worst_track else " "
        scores = "".join(f"{_fmt(track.per_model.get(m)):>18}" for m in models)
        print(
            f"{marker}{track.track_id:>5} {len(frames):>6}{min(frames):>7}{max(frames):>7}"
            f"{_fmt(track.score):>9}  {scores}".rstrip(),
            file=out,
        )
    print("(* = the most-fake track, which decides the video; first/last are frame indices)", file=out)


def print_verdict(result: JobResult, out: TextIO) -> None:
    score = result.score
    shown = "" if score is None else f"   P(fake) {score:.4f} (before overrides {_fmt(result.raw_score)})"
    print(f"verdict: {result.verdict}{shown}", file=out)
    print(f"method {result.method}: REAL < {result.t_low} <= UNCERTAIN <= {result.t_high} < FAKE", file=out)
    for o in result.overrides:
        print(f"override {o.kind}: {o.before:.4f} -> {o.after:.4f} ({o.reason})", file=out)


def print_report(video: Path, result: JobResult, out: TextIO) -> None:
    if result.test_pack:
        print(TEST_PACK_BANNER, file=out)
    print(
        f"{video.name}: {result.frames_sampled} frames sampled, {result.tracks.frames_with_face} with a "
        f"face, {result.faces_found} faces scored; pack {result.model_pack}",
        file=out,
    )
    if result.per_model:
        print(file=out)
        print_models(result, out)
        print(file=out)
        print_tracks(result, out)
    print(file=out)
    print_verdict(result, out)
    if result.test_pack:
        print(TEST_PACK_BANNER, file=out)
    print("timings (s): " + ", ".join(f"{k}={v}" for k, v in result.timings.items()), file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verity-scan", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("video", type=Path, help="a local video file")
    parser.add_argument("--pack", type=Path, help="model pack manifest (default: $VERITY_PACK or the default pack)")
    parser.add_argument("--frames", type=int, help="frames to sample (default: $VERITY_MAX_FRAMES or 32)")
    parser.add_argument("--downscale", type=float, help="run MTCNN on frames shrunk by this factor (0, 1]")
    parser.add_argument("--png", type=Path, help="timeline PNG to write (default: <video stem>.timeline.png here)")
    parser.add_argument("--json", action="store_true", help="print the full result as JSON instead of tables")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        parser.error(f"{args.video} is not a file")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    resources = load_resources(tool_settings(args.pack, args.frames, args.downscale))
    try:
        output = run_pipeline(args.video, resources.faces, resources.pack, resources.config)
    except MediaError as exc:
        print(f"{exc.code}: {exc.message}", file=sys.stderr)
        return 2
    result = output.result

    png = args.png or Path.cwd() / f"{args.video.stem}.timeline.png"
    score = "" if result.score is None else f" {result.score:.3f}"
    title = f"{args.video.name}: {result.verdict}{score} ({result.model_pack})"
    rows = [row.columns() for row in output.frame_rows]
    png.write_bytes(timeline_png(rows, result.t_low or 0.0, result.t_high or 0.0, title))

    if args.json:
        if result.test_pack:
            print(TEST_PACK_BANNER, file=sys.stderr)
        print(json.dumps(result.columns(), indent=2))
        print(f"timeline written to {png}", file=sys.stderr)
    else:
        print_report(args.video, result, sys.stdout)
        print(f"timeline written to {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
