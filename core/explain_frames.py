"""Which face crops a job's heatmaps explain: the frames that decided the verdict (pure numpy, no torch)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def decisive_rows(track_ids: ArrayLike, scores: ArrayLike, worst_track: int, per_member: int) -> list[int]:
    """The rows (detections) of ``worst_track`` with the ``per_member`` highest scores of one member, highest
    first; equal scores keep detection order, so the earliest frame comes first."""
    if per_member < 1:
        raise ValueError(f"per_member must be at least 1, got {per_member}")
    tracks = np.asarray(track_ids)
    values = np.asarray(scores, dtype=np.float64)
    if tracks.shape != values.shape or tracks.ndim != 1:
        raise ValueError(f"track_ids {tracks.shape} and scores {values.shape} must be 1-D and of one length")
    rows = np.flatnonzero(tracks == worst_track)
    order = np.argsort(-values[rows], kind="stable")
    return [int(r) for r in rows[order][:per_member]]
