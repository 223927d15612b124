"""Every forensic signal of one job, timed: the entry point the pipeline calls after faces and tracks."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

from core.media.decode import Frame
from core.media.probe import VideoInfo
from core.signals import SIGNAL_NAMES, SignalReport
from workers.forensics.codec import measure_codec
from workers.forensics.noise import measure_noise
from workers.forensics.photographic import measure_scope
from workers.forensics.readings import Readings, Sighting, choose_sightings, regions_of
from workers.forensics.sharpness import measure_sharpness
from workers.forensics.spectrum import measure_spectrum
from workers.forensics.temporal import measure_temporal


def compute_signals(
    path: Path, info: VideoInfo, frames: Sequence[Frame], sightings: Sequence[Sighting]
) -> SignalReport:
    """The job's signals from its file, its decoded frames and its face sightings (none: the face signals are
    NaN with the reason)."""
    start = time.perf_counter()
    readings = Readings()
    faces_seen = regions_of(choose_sightings(sightings))
    measure_sharpness(frames, faces_seen, readings)
    measure_noise(faces_seen, readings)
    measure_spectrum(faces_seen, readings)
    measure_temporal(faces_seen, readings)
    measure_codec(path, info, readings)
    measure_scope(faces_seen, readings)
    values = {name: readings.values.get(name, math.nan) for name in SIGNAL_NAMES}
    return SignalReport(values, dict(readings.reasons), round(time.perf_counter() - start, 4))
