"""What the scope check (core/scope.py) measures: how flat the faces are, and how large."""

from __future__ import annotations

from collections.abc import Sequence

from core.scope import flat_share
from workers.forensics.readings import Readings, Seen, reduce_tracks


def measure_scope(faces_seen: Sequence[Seen], readings: Readings) -> None:
    flat = [(s.track_id, flat_share(s.region.grey, s.region.face)) for s in faces_seen]
    sizes = [
        (s.track_id, float(min(s.sighting.box[2] - s.sighting.box[0], s.sighting.box[3] - s.sighting.box[1])))
        for s in faces_seen
    ]
    # The pack can judge the media if it can judge any track: the most photographic and the largest decide.
    readings.put("scope.flat_share", reduce_tracks(flat, fake_direction=-1), "no face")
    readings.put("scope.face_px", reduce_tracks(sizes, fake_direction=+1), "no face")
