"""Explain a scored job: each member's class-activation heatmaps on the worst track's highest-scoring crops, stored
as PNGs under the job's prefix and listed in the result. A member that cannot be explained gets its reason instead;
the job never fails for it."""

from __future__ import annotations

import io
import logging
import time
from dataclasses import replace

import numpy as np

from core.explain_frames import decisive_rows
from core.results import HeatmapEntry, JobResult
from core.storage import ObjectStore
from models.detector import TorchDetector
from models.pack import LoadedMember, LoadedPack
from workers.explain.cam import Cams, member_cams
from workers.explain.overlay import overlay_png
from workers.pipeline import PipelineOutput, ScoredCrops

log = logging.getLogger(__name__)


def heatmap_prefix(job_id: str) -> str:
    return f"heatmaps/{job_id}"


def _cams(member: LoadedMember, crops: np.ndarray) -> Cams | str:
    """The member's maps, or why there are none (recorded, not raised)."""
    detector = member.detector
    if not isinstance(detector, TorchDetector):
        return f"{type(detector).__name__} is not a torch network"
    try:
        return member_cams(detector, crops)
    except Exception as exc:
        log.warning("heatmaps of %s failed: %s", member.manifest.name, exc)
        return f"{type(exc).__name__}: {exc}"[:500]


def _member_entries(
    member: LoadedMember,
    output: PipelineOutput,
    scored: ScoredCrops,
    rows: list[int],
    store: ObjectStore,
    prefix: str,
    first: int,
) -> list[HeatmapEntry]:
    name, detector = member.manifest.name, member.detector
    crops = scored.crops[detector.crop.name, detector.input_size][rows]
    made = _cams(member, crops)
    entries: list[HeatmapEntry] = []
    for i, row in enumerate(rows):
        detection = scored.detections[row]
        frame = output.frames[detection.position]
        key: str | None = None
        if isinstance(made, Cams):
            key = f"{prefix}/{first + i}.png"
            store.put_stream(key, io.BytesIO(overlay_png(crops[i], made.maps[i])), "image/png")
        entries.append(
            HeatmapEntry(
                member=name,
                frame_index=frame.index,
                timestamp_s=round(frame.timestamp_s, 3),
                track_id=detection.track_id,
                score=round(float(scored.scores[name][row]), 6),
                method=made.method if isinstance(made, Cams) else None,
                key=key,
                error=None if isinstance(made, Cams) else made,
            )
        )
    return entries


def explain(output: PipelineOutput, pack: LoadedPack, per_member: int, store: ObjectStore, prefix: str) -> JobResult:
    """The job's result with its heatmaps and their time (``timings["explain"]``, counted in the total). Entry n's
    PNG is ``<prefix>/<n>.png``. A result with no scored face is returned as it is."""
    result, scored = output.result, output.scored
    worst = result.tracks.worst_track
    if scored is None or worst is None:
        return result
    start = time.perf_counter()
    track_ids = np.array([d.track_id for d in scored.detections])
    entries: list[HeatmapEntry] = []
    for member in pack.members:
        scores = scored.scores.get(member.manifest.name)
        if scores is None:  # it failed to score: its error is in the result's per-model detail
            continue
        rows = decisive_rows(track_ids, scores, worst, per_member)
        if rows:
            entries.extend(_member_entries(member, output, scored, rows, store, prefix, len(entries)))
    seconds = round(time.perf_counter() - start, 4)
    timings = {**result.timings, "explain": seconds}
    if "total" in timings:
        timings["total"] = round(timings["total"] + seconds, 4)
    return replace(result, heatmaps=tuple(entries), timings=timings)
