"""Figures for people: the per-frame score timeline of one video, and a calibration version's reliability diagram.

Pure matplotlib on the Agg canvas (no pyplot global state, no torch), so the API can render it per request.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.typing import LineStyleType

from core.scoring.metrics import ReliabilityBin

_LINESTYLES: tuple[LineStyleType, ...] = ("-", "--", ":", "-.")


def timeline_figure(frame_rows: Iterable[Mapping[str, Any]], t_low: float, t_high: float, title: str) -> Figure:
    """Per-frame P(fake) against time: one colour per model, one line style per face track, thresholds dashed.

    ``frame_rows`` are the pipeline's per-face-per-model rows (``timestamp_s``, ``track_id``, ``model``,
    ``score``). The thresholds apply to the fused video score; they are drawn for orientation only.
    """
    series: dict[tuple[str, int], list[tuple[float, float]]] = {}
    for row in frame_rows:
        key = (str(row["model"]), int(row.get("track_id") or 0))
        series.setdefault(key, []).append((float(row["timestamp_s"]), float(row["score"])))
    models = sorted({model for model, _ in series})
    tracks = sorted({track for _, track in series})

    fig = Figure(figsize=(10, 4.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    colours = {model: f"C{i % 10}" for i, model in enumerate(models)}
    for (model, track), points in sorted(series.items()):
        points.sort()
        label = model if len(tracks) == 1 else f"{model} · track {track}"
        ax.plot(
            [t for t, _ in points],
            [s for _, s in points],
            color=colours[model],
            linestyle=_LINESTYLES[tracks.index(track) % len(_LINESTYLES)],
            marker="o",
            markersize=3,
            linewidth=1.2,
            label=label,
        )
    thresholds = [
        ax.axhline(t_high, color="firebrick", linestyle=(0, (6, 3)), linewidth=1, label=f"T_high {t_high:g}"),
        ax.axhline(t_low, color="seagreen", linestyle=(0, (6, 3)), linewidth=1, label=f"T_low {t_low:g}"),
    ]
    if not series:
        ax.text(0.5, 0.5, "no face scored", transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("P(fake) per frame")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    # A crowd gives models × tracks lines: the legend names colours (models) and line styles (tracks)
    # separately so it stays a few entries long; styles repeat every len(_LINESTYLES) tracks.
    handles = [Line2D([], [], color=colours[model], marker="o", markersize=3, label=model) for model in models]
    if len(tracks) > 1:
        for i, style in enumerate(_LINESTYLES[: len(tracks)]):
            ids = ", ".join(str(t) for t in tracks[i :: len(_LINESTYLES)])
            handles.append(Line2D([], [], color="dimgrey", linestyle=style, label=f"track {ids}"))
    ax.legend(
        handles=[*handles, *thresholds], loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False
    )
    return fig


def timeline_png(frame_rows: Iterable[Mapping[str, Any]], t_low: float, t_high: float, title: str) -> bytes:
    buffer = io.BytesIO()
    timeline_figure(frame_rows, t_low, t_high, title).savefig(buffer, format="png")
    return buffer.getvalue()


def reliability_png(version: str, metrics: Mapping[str, Any]) -> bytes:
    """Reliability diagram of a version's held-out videos, before (the setup it was fitted against) and after.

    ``metrics`` is the version's stored ``metrics`` column (its ``reliability`` bins and ``held_out`` summaries).
    """
    reliability = metrics.get("reliability") or {}
    held = metrics.get("held_out") or {}
    fig = Figure(figsize=(6.4, 6.4), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for key, colour, name in (("before", "tab:red", "before"), ("after", "tab:blue", f"after ({version})")):
        bins = [ReliabilityBin.from_dict(b) for b in reliability.get(key) or []]
        full = [b for b in bins if b.count]
        if not full:
            continue
        summary = held.get(key) or {}
        if key == "before" and held.get("before_version"):
            name = f"before ({held['before_version']})"
        elif key == "before":
            name = "before (uncalibrated)"
        if "ece" in summary:
            name += f", ECE {summary['ece']:.3f}"
        top.plot(
            [b.mean_predicted for b in full], [b.fraction_fake for b in full], marker="o", color=colour, label=name
        )
        width = bins[0].hi - bins[0].lo
        offset = -width / 4 if key == "before" else width / 4
        bottom.bar([(b.lo + b.hi) / 2 + offset for b in bins], [b.count for b in bins], width=width / 2, color=colour)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("fraction labelled FAKE")
    n = (held.get("after") or {}).get("n", 0)
    top.set_title(f"Calibration {version}: reliability on {n} held-out labelled videos")
    top.legend(loc="upper left", fontsize="small")
    bottom.set_xlabel("fused P(fake)")
    bottom.set_ylabel("videos")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
