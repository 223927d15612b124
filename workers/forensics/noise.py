"""Noise-residual consistency: a pasted face carries noise unlike the camera's in the rest of the frame."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from workers.forensics.readings import Readings, Seen
from workers.forensics.regions import FaceRegion

# Below this residual std (grey levels) on both sides there is no noise to compare (a flat synthetic picture).
MIN_NOISE = 0.05


def noise_residual(luma: NDArray[np.float32]) -> NDArray[np.float32]:
    """The picture less its 3x3 median: sensor noise and fine texture, without edges and shading."""
    return np.asarray(luma - cv2.medianBlur(luma, 3), np.float32)


def noise_levels(region: FaceRegion) -> tuple[float, float]:
    """(face, ring) standard deviation of the noise residual."""
    residual = noise_residual(region.grey)
    return float(residual[region.face].std()), float(residual[region.ring].std())


def noise_mismatch(face: float, ring: float) -> float:
    """|log(face / ring)|: 0 when both carry the same noise; NaN when neither carries any."""
    if max(face, ring) < MIN_NOISE:
        return math.nan
    return abs(math.log(max(face, MIN_NOISE) / max(ring, MIN_NOISE)))


def measure_noise(faces_seen: Sequence[Seen], readings: Readings) -> None:
    values = [(s.track_id, noise_mismatch(*noise_levels(s.region))) for s in faces_seen]
    readings.per_track("forensics.noise_mismatch", values, "no face, or no noise in the face or around it")
