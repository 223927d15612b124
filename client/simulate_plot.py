"""The simulator's picture: the decision over time of a few videos under each strategy, and the metrics table.

Drawn from the report's JSON, on matplotlib's Agg canvas like core/plots.py (the client imports nothing of the
server, so the style is restated here, not shared).
"""

from __future__ import annotations

import io
import math

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from client.simulate_cli import table_rows
from client.types import SimulationJson, VideoTimelineJson

MAX_TIMELINES = 6
VERDICT_MARKERS = {"FAKE": ("^", "firebrick"), "REAL": ("v", "seagreen"), "UNCERTAIN": ("o", "darkgoldenrod")}
# Noisy-OR thresholds sit near 1 (the seed's 0.9967 / 0.9982): a logit axis keeps them apart.
LOGIT_FROM = 0.9


def _timeline(ax: Axes, video: VideoTimelineJson, report: SimulationJson, logit: bool) -> None:
    by_name = {s["name"]: s for s in report["strategies"]}
    for i, outcome in enumerate(video["outcomes"]):
        colour = f"C{i % 10}"
        strategy = by_name[outcome["strategy"]]
        points = outcome["points"]
        scores = [math.nan if p["score"] is None else p["score"] for p in points]
        label = f"{outcome['strategy']} → {outcome['final'] or 'undecided'}, {outcome['flips']} flips"
        ax.plot([p["t"] for p in points], scores, color=colour, linewidth=1.2, marker=".", markersize=3, label=label)
        for threshold in {strategy["t_low"], strategy["t_high"]}:
            ax.axhline(threshold, color=colour, linestyle=(0, (6, 3)), linewidth=0.8, alpha=0.7)
        previous = None
        for p in points:
            if p["verdict"] is not None and p["verdict"] != previous and p["score"] is not None:
                marker, edge = VERDICT_MARKERS[p["verdict"]]
                ax.plot(p["t"], p["score"], marker=marker, color=edge, markersize=7, linestyle="none")
            previous = p["verdict"]
    times = [p["t"] for o in video["outcomes"] for p in o["points"]]
    if times:  # the whole stream, undecided stretches included (their scores are gaps)
        ax.set_xlim(min(times) - 0.25, max(times) + 0.25)
    if logit:
        ax.set_yscale("logit")
    else:
        ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{video['name'] or video['video_id'][:8]} (labelled {video['label']})", fontsize="medium")
    ax.set_ylabel("P(fake)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def simulation_png(report: SimulationJson) -> bytes:
    """Decision timelines (score per strategy, its thresholds dashed, a marker at each verdict change) for up to
    MAX_TIMELINES videos, then the comparison table."""
    videos = report["timelines"][:MAX_TIMELINES]
    rows = table_rows(report["strategies"])
    logit = min((s["t_low"] for s in report["strategies"]), default=0.0) >= LOGIT_FROM
    fig = Figure(figsize=(11, 2.6 * len(videos) + 0.3 * len(rows) + 1.2), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ratios = [3.0] * len(videos) + [0.16 * len(rows)]
    axes = fig.subplots(len(ratios), 1, gridspec_kw={"height_ratios": ratios}, squeeze=False)[:, 0]
    for ax, video in zip(axes, videos, strict=False):
        _timeline(ax, video, report, logit)
    if videos:
        axes[len(videos) - 1].set_xlabel("time in the video (s)")
    table_ax = axes[-1]
    table_ax.axis("off")
    table = table_ax.table(
        cellText=[r[1:] for r in rows[1:]],
        rowLabels=[r[0] for r in rows[1:]],
        colLabels=rows[0][1:],
        loc="center",
        cellLoc="right",
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    fig.suptitle(
        f"Live-stream simulation: {report['videos']} labelled videos ({report['real']} REAL, {report['fake']} FAKE)"
    )
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()
