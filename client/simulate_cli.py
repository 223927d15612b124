"""``verity simulate``: replay labelled stored jobs as live streams on the server and print the strategies side by
side (Option A vs Option B vs the whole file), optionally writing a PNG (the rest of the CLI is in client/cli.py)."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from client.api import VerityClient
from client.output import EXIT_OK, EXIT_USAGE, Output
from client.types import Json, SimulationJson, SimulationStrategyJson

KINDS = ("window", "per_frame", "whole_file")
STRATEGY_KEYS = ("fps", "window", "averaging", "ema_alpha", "t_low", "t_high", "hysteresis", "min_frames")
LABEL_KEYS = ("job_id", "filename", "sha256")
AGGREGATOR_PREFIX = "agg."

STRATEGY_HELP = (
    "NAME=KIND[,KEY=VALUE...] or KIND[,...], repeatable; KIND window (Option A), per_frame (Option B) or "
    f"whole_file; KEY one of {', '.join(STRATEGY_KEYS)} or agg.MEMBER (an aggregator, e.g. agg.meso4_df=topk:4). "
    "Without one: option_a=window, option_b=per_frame and whole_file. --fps and --window apply where a strategy "
    "gives none"
)


def parse_strategy(raw: str) -> Json:
    """``NAME=KIND,KEY=VALUE,...`` -> the request's strategy object; ArgumentTypeError naming the bad part."""
    head, *pairs = [part.strip() for part in raw.split(",")]
    name, sep, kind = head.partition("=")
    if not sep:
        name, kind = head, head
    if kind not in KINDS:
        raise argparse.ArgumentTypeError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    strategy: Json = {"name": name, "kind": kind}
    aggregators: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value:
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {pair!r}")
        if key.startswith(AGGREGATOR_PREFIX) and len(key) > len(AGGREGATOR_PREFIX):
            aggregators[key[len(AGGREGATOR_PREFIX) :]] = value
        elif key in STRATEGY_KEYS:
            strategy[key] = _value(value)
        else:
            raise argparse.ArgumentTypeError(f"unknown key {key!r}; use {', '.join(STRATEGY_KEYS)} or agg.MEMBER")
    if aggregators:
        strategy["aggregators"] = aggregators
    return strategy


def _value(text: str) -> Any:
    """A number where the text is one (the server checks each field's type and range)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def read_labels(path: Path) -> list[Json]:
    """Rows of a labels CSV: a ``label`` column (REAL/FAKE) and one of job_id, filename or sha256 per row."""
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = set(reader.fieldnames or ())
        if "label" not in columns or not columns & set(LABEL_KEYS):
            raise ValueError(f"{path}: needs a label column and one of {', '.join(LABEL_KEYS)}")
        rows: list[Json] = []
        for line, row in enumerate(reader, start=2):
            label = (row.get("label") or "").strip().upper()
            if label not in ("REAL", "FAKE"):
                raise ValueError(f"{path}:{line}: label must be REAL or FAKE, got {row.get('label')!r}")
            key = next(((k, row[k].strip()) for k in LABEL_KEYS if (row.get(k) or "").strip()), None)
            if key is None:
                raise ValueError(f"{path}:{line}: give one of {', '.join(LABEL_KEYS)}")
            rows.append({"label": label, key[0]: key[1]})
    return rows


def request_body(args: argparse.Namespace, labels: list[Json] | None) -> Json:
    body: Json = {"fps": args.fps, "window": args.window, "timelines": args.timelines}
    if args.strategy:
        body["strategies"] = args.strategy
    if labels is not None:
        body["labels"] = labels
    if args.calibration_version:
        body["calibration_version"] = args.calibration_version
    if args.per_frame_ms is not None:
        body["per_frame_ms"] = args.per_frame_ms
    if args.max_videos is not None:
        body["max_videos"] = args.max_videos
    if args.fit_target_fpr is not None:
        body["fit_per_frame"] = {
            "target_fpr": args.fit_target_fpr,
            "uncertain_band": args.uncertain_band,
            "save": args.save_thresholds,
        }
    return body


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


# (row label, cell) of the comparison table, one column per strategy.
ROWS: tuple[tuple[str, Any], ...] = (
    ("kind", lambda s: s["kind"]),
    ("fps", lambda s: f"{s['fps']:g}"),
    ("window", lambda s: str((s["strategy"] or {}).get("window", "all"))),
    ("T_low", lambda s: f"{s['t_low']:.6f}"),
    ("T_high", lambda s: f"{s['t_high']:.6f}"),
    ("TPR", lambda s: _pct(s["tpr"])),
    ("TNR", lambda s: _pct(s["tnr"])),
    ("FPR", lambda s: _pct(s["fpr"])),
    ("FPR at any time", lambda s: _pct(s["fpr_any_time"])),
    ("uncertain", lambda s: _pct(s["uncertain_rate"])),
    ("undecided", lambda s: _pct(s["undecided_rate"])),
    ("first decision (s)", lambda s: _num(s["mean_first_decision_s"])),
    ("stable decision (s)", lambda s: _num(s["mean_stable_s"])),
    ("flips / video", lambda s: f"{s['mean_flips']:.2f} (max {s['max_flips']})"),
    ("videos ≥ flip limit", lambda s: str(s["videos_over_flip_limit"])),
    ("frame budget (ms)", lambda s: f"{s['latency']['frame_budget_ms']:.0f}"),
    ("per-frame cost (ms)", lambda s: _num(s["latency"]["per_frame_ms"], 0)),
)


def table_rows(strategies: list[SimulationStrategyJson]) -> list[list[str]]:
    """The table as text cells: a header row of strategy names, then one row per metric."""
    return [["", *(s["name"] for s in strategies)]] + [[label, *(cell(s) for s in strategies)] for label, cell in ROWS]


def describe(report: SimulationJson) -> str:
    source = "moderator feedback" if report["label_source"] == "feedback" else "the labels given"
    version = report["calibration_version"] or "none (identity)"
    lines = [
        f"{report['videos']} labelled videos ({report['real']} REAL, {report['fake']} FAKE; labels from {source}), "
        f"calibration version {version}"
    ]
    if report["without_frame_scores"]:
        lines.append(f"{report['without_frame_scores']} labelled jobs left out: no stored frame scores")
    if report["unmatched_labels"]:
        lines.append(f"labels matching no job: {', '.join(report['unmatched_labels'][:10])}")
    rows = table_rows(report["strategies"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines.append("")
    for row in rows:
        lines.append(
            "  ".join(
                cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    warnings = sorted({w for s in report["strategies"] for w in s["latency"]["warnings"]})
    lines.extend(f"warning: {w}" for w in warnings)
    if report["fit"] is not None:
        fit = report["fit"]
        t = fit["thresholds"]
        saved = f"saved in {fit['saved_to']}" if fit["saved_to"] else "not saved (--save-thresholds)"
        lines.append(
            f"Option B thresholds fitted for {fit['strategy']} ({t['averaging']}) at FPR {t['target_fpr']:g}: "
            f"T_low {t['t_low']:.6f}, T_high {t['t_high']:.6f} on {t['videos']} videos, {saved}; "
            "its metrics above are in-sample"
        )
    lines.append(f"flip limit: fewer than {report['flip_limit']} verdict changes per video; times are stream seconds")
    return "\n".join(lines)


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``simulate`` subcommand's arguments."""
    p = sub.add_parser(
        "simulate", parents=[common], help="replay labelled stored jobs as live streams: Option A vs B (admin key)"
    )
    p.add_argument("--strategy", action="append", type=parse_strategy, metavar="SPEC", help=STRATEGY_HELP)
    p.add_argument("--fps", type=float, default=2.0, help="frame rate where a strategy gives none (2)")
    p.add_argument("--window", type=int, default=27, help="window in frames where a strategy gives none (27)")
    p.add_argument(
        "--labels",
        type=Path,
        metavar="CSV",
        help="labels instead of moderator feedback: columns label (REAL/FAKE) and job_id, filename or sha256",
    )
    p.add_argument("--calibration-version", help="a version, 'none', or the active one (default)")
    p.add_argument("--per-frame-ms", type=float, help="measured cost of one frame (default: the server's estimate)")
    p.add_argument("--timelines", type=int, default=4, help="videos whose decision timelines to fetch and plot (4)")
    p.add_argument("--max-videos", type=int, help="newest labelled jobs to replay (server default 500)")
    p.add_argument("--fit-target-fpr", type=float, metavar="FPR", help="fit Option B thresholds for this FPR")
    p.add_argument("--uncertain-band", type=float, default=0.05, help="share of videos in the fitted band (0.05)")
    p.add_argument("--save-thresholds", action="store_true", help="store the fitted ones in the calibration version")
    p.add_argument("--png", type=Path, metavar="OUT.png", help="write decision timelines and the metrics table")


def cmd_simulate(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    try:
        labels = None if args.labels is None else read_labels(args.labels)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        out.note(f"verity simulate: {exc}")
        return EXIT_USAGE
    report = client.simulate(request_body(args, labels))
    out.emit(report, lambda: describe(report))
    if args.png is not None:
        from client.simulate_plot import simulation_png  # matplotlib only when a picture is asked for

        args.png.write_bytes(simulation_png(report))
        out.note(f"wrote {args.png}")
    return EXIT_OK
