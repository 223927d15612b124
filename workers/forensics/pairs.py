"""The frame right after some sampled frames, decoded with them, for the temporal signals.

Sampled frames lie far apart (32 over a whole video); flicker and flow compare adjacent frames. Decoding walks
the stream sequentially anyway, so the frame after a sampled one costs one more frame converted, not a seek.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # PyAV stays out of the pure modules' imports (tests/unit forbids it)
    from core.media.decode import Frame

# Pairs per video: as many as a track's sightings the signals use (readings.SIGHTINGS_PER_TRACK), for at most
# that many extra decoded frames in memory.
PAIRS = 8


def companion_indices(sampled: Sequence[int], frame_count: int, pairs: int = PAIRS) -> list[int]:
    """The frame after each of ``pairs`` evenly spread sampled frames, within the video."""
    ordered = sorted(set(sampled))
    if len(ordered) < 1 or frame_count < 2:
        return []
    picks = np.unique(np.linspace(0, len(ordered) - 1, min(len(ordered), pairs)).round().astype(int))
    return [ordered[int(i)] + 1 for i in picks if ordered[int(i)] + 1 < frame_count]


def split_companions(
    frames: Sequence[Frame], sampled: Sequence[int], companions: Sequence[int]
) -> tuple[list[Frame], dict[int, Frame]]:
    """(the sampled frames, {sampled index: the frame after it}) from frames decoded for both."""
    wanted, by_index = set(sampled), {f.index: f for f in frames}
    after = {i - 1: by_index[i] for i in companions if i in by_index and i - 1 in by_index}
    return [f for f in frames if f.index in wanted], after
