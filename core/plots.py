"""Figures for people: the per-frame score timeline of one video.

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
