"""Frequency statistics of the face: its high-frequency energy share and the slope of its power spectrum.

Pure numpy (unit-tested without OpenCV).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from workers.forensics.readings import Readings, Seen

# Frequencies in cycles per pixel; Nyquist is 0.5. The slope is fitted between these, clear of the DC term
# and of the corners the azimuthal average covers only partly.
SLOPE_BAND = (0.04, 0.45)
# The top octave (half Nyquist and up) against the top two: a natural image's power falls so steeply that a share
# of the whole spectrum is ~1e-3 whatever the face, while this one tells fine texture from a smoothed face.
HIGH_FREQUENCY = 0.25
HIGH_BAND_START = 0.125
MIN_SIDE = 16  # a smaller face crop has too few frequencies to fit


def _face_patch(s: Seen) -> NDArray[np.float32]:
    rows, cols = np.nonzero(s.region.face)
    return s.region.grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]


def radial_power(patch: NDArray[np.float32]) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(frequency, mean power) per one-pixel-wide ring of the Hann-windowed patch's 2-D power spectrum."""
    height, width = patch.shape
    window = np.outer(np.hanning(height), np.hanning(width))
    centred = (patch - patch.mean()) * window
    power = np.abs(np.fft.fftshift(np.fft.fft2(centred))) ** 2
    fy = np.fft.fftshift(np.fft.fftfreq(height))[:, None]
    fx = np.fft.fftshift(np.fft.fftfreq(width))[None, :]
    radius = np.hypot(fy, fx)
    step = 1.0 / max(height, width)
    bins = np.round(radius / step).astype(int)
    sums = np.bincount(bins.ravel(), power.ravel())
    counts = np.bincount(bins.ravel())
    used = counts > 0
    return (np.arange(len(sums)) * step)[used], sums[used] / counts[used]


def hf_share(frequency: NDArray[np.float64], power: NDArray[np.float64]) -> float:
    """The share of the energy between HIGH_BAND_START and Nyquist that lies above HIGH_FREQUENCY."""
    band = (frequency > HIGH_BAND_START) & (frequency <= 0.5)
    total = float(power[band].sum())
    return float(power[band & (frequency > HIGH_FREQUENCY)].sum()) / total if total > 0 else math.nan


def spectrum_slope(frequency: NDArray[np.float64], power: NDArray[np.float64]) -> float:
    """The least-squares slope of log power against log frequency within SLOPE_BAND."""
    band = (frequency >= SLOPE_BAND[0]) & (frequency <= SLOPE_BAND[1]) & (power > 0)
    if band.sum() < 3:
        return math.nan
    slope, _ = np.polyfit(np.log(frequency[band]), np.log(power[band]), 1)
    return float(slope)


def measure_spectrum(faces_seen: Sequence[Seen], readings: Readings) -> None:
    shares: list[tuple[int, float]] = []
    slopes: list[tuple[int, float]] = []
    for s in faces_seen:
        patch = _face_patch(s)
        if min(patch.shape) < MIN_SIDE:
            continue
        frequency, power = radial_power(patch)
        shares.append((s.track_id, hf_share(frequency, power)))
        slopes.append((s.track_id, spectrum_slope(frequency, power)))
    reason = f"no face of at least {MIN_SIDE} px"
    readings.per_track("artefacts.hf_share", shares, reason)
    readings.per_track("artefacts.spectrum_slope", slopes, reason)
