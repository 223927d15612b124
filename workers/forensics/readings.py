"""What the signal families share: a face sighting, the readings they fill, and the reduction over tracks.

Pure numpy (unit-tested without OpenCV). A job's signal is one number: each track's median over its sightings,
then the most suspicious track's (the way the verdict rests on the worst track), or the median over tracks for a
context-only signal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from core.signals import SPECS
from workers.forensics.regions import Box, FaceRegion, face_region

if TYPE_CHECKING:  # PyAV stays out of the pure modules' imports (tests/unit forbids it)
    from core.media.decode import Frame

# Enough sightings per track for a stable median, few enough to keep the family cheap on long tracks.
SIGHTINGS_PER_TRACK = 8
# The largest faces decide: a crowd's background faces are too small to measure and cost as much.
MAX_TRACKS = 4


@dataclass(frozen=True)
class Sighting:
    """One face in one sampled frame, and the frame decoded right after it (None: not decoded)."""

    track_id: int
    frame: Frame
    box: Box
    next_frame: Frame | None = None


@dataclass(frozen=True)
class Seen:
    """A sighting with its face region cut out: what the face signals measure."""

    sighting: Sighting
    region: FaceRegion

    @property
    def track_id(self) -> int:
        return self.sighting.track_id


def regions_of(sightings: Sequence[Sighting]) -> list[Seen]:
    """Each sighting's face region, once for every family; a box off the frame is left out."""
    seen = [(s, face_region(s.frame.image, s.box)) for s in sightings]
    return [Seen(s, region) for s, region in seen if region is not None]


@dataclass
class Readings:
    """The values the families computed and, for those they could not, why."""

    values: dict[str, float] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)

    def put(self, name: str, value: float, reason: str) -> None:
        """Record ``value``, or NaN and ``reason`` when it is not finite."""
        if name not in SPECS:
            raise KeyError(f"{name!r} is not in the signal catalogue (core.signals.SIGNALS)")
        self.values[name] = float(value) if math.isfinite(value) else math.nan
        if math.isfinite(value):
            self.reasons.pop(name, None)
        else:
            self.reasons[name] = reason

    def per_track(self, name: str, measured: Iterable[tuple[int, float]], reason: str) -> None:
        """Reduce (track id, value) pairs to the job's value (see the module doc); NaN pairs are dropped."""
        self.put(name, reduce_tracks(measured, SPECS[name].fake_direction), reason)


def reduce_tracks(measured: Iterable[tuple[int, float]], fake_direction: int) -> float:
    """Each track's median, then the most suspicious track's by ``fake_direction`` (0: the median); NaN if none."""
    by_track: dict[int, list[float]] = {}
    for track, value in measured:
        if math.isfinite(value):
            by_track.setdefault(track, []).append(value)
    if not by_track:
        return math.nan
    medians = [float(np.median(values)) for values in by_track.values()]
    if fake_direction > 0:
        return max(medians)
    if fake_direction < 0:
        return min(medians)
    return float(np.median(medians))


def box_area(box: Box) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def _evenly(items: Sequence[Sighting], count: int) -> list[Sighting]:
    if count <= 0 or not items:
        return []
    picks = np.unique(np.linspace(0, len(items) - 1, min(len(items), count)).round().astype(int))
    return [items[int(i)] for i in picks]


def choose_sightings(sightings: Sequence[Sighting]) -> list[Sighting]:
    """At most SIGHTINGS_PER_TRACK sightings of each of the MAX_TRACKS largest-faced tracks: those with the frame
    after them decoded first (the temporal signals need them), then evenly spread others."""
    by_track: dict[int, list[Sighting]] = {}
    for s in sightings:
        by_track.setdefault(s.track_id, []).append(s)
    largest = sorted(by_track, key=lambda t: -float(np.median([box_area(s.box) for s in by_track[t]])))
    chosen: list[Sighting] = []
    for track in largest[:MAX_TRACKS]:
        seen = sorted(by_track[track], key=lambda s: s.frame.index)
        paired = _evenly([s for s in seen if s.next_frame is not None], SIGHTINGS_PER_TRACK)
        chosen.extend(paired)
        chosen.extend(_evenly([s for s in seen if s.next_frame is None], SIGHTINGS_PER_TRACK - len(paired)))
    return chosen
