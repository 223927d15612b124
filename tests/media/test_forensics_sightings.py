"""Which face sightings the signals measure: the largest-faced tracks, paired frames first, evenly spread."""

from __future__ import annotations

import numpy as np

from core.media.decode import Frame
from workers.forensics.readings import MAX_TRACKS, SIGHTINGS_PER_TRACK, Sighting, choose_sightings

IMAGE = np.zeros((8, 8, 3), np.uint8)


def _sighting(track: int, index: int, side: float, paired: bool = False) -> Sighting:
    after = Frame(index + 1, 0.0, IMAGE) if paired else None
    return Sighting(track, Frame(index, 0.0, IMAGE), (0.0, 0.0, side, side), after)


def test_the_largest_faced_tracks_are_kept() -> None:
    sightings = [_sighting(track, i, side=10.0 * (track + 1)) for track in range(6) for i in range(3)]
    kept = {s.track_id for s in choose_sightings(sightings)}
    assert kept == set(range(6 - MAX_TRACKS, 6))


def test_paired_sightings_come_first_then_evenly_spread_others() -> None:
    sightings = [_sighting(0, i, 50.0, paired=i in {5, 20}) for i in range(30)]
    chosen = choose_sightings(sightings)
    assert len(chosen) == SIGHTINGS_PER_TRACK
    assert [s.frame.index for s in chosen[:2]] == [5, 20]
    others = [s.frame.index for s in chosen[2:]]
    assert others[0] == 0 and others[-1] == 29 and len(set(others)) == SIGHTINGS_PER_TRACK - 2
