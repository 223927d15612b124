"""Noise-residual consistency: a face pasted in with noise unlike its surroundings'."""

from __future__ import annotations

import math

import cv2

from tests.support.forensic_frames import face_slice, seen, sighting, textured
from workers.forensics.noise import measure_noise
from workers.forensics.readings import Readings


def test_a_pasted_face_with_other_noise_stands_out() -> None:
    noisy = textured(noise=6.0, seed=1)
    rows, cols = face_slice()
    pasted = noisy.copy()
    pasted[rows, cols] = cv2.GaussianBlur(textured(seed=1), (0, 0), 1.0)[rows, cols]  # the same face, denoised
    mismatched, consistent = Readings(), Readings()
    measure_noise(seen(sighting(pasted)), mismatched)
    measure_noise(seen(sighting(noisy)), consistent)
    assert mismatched.values["forensics.noise_mismatch"] > 1.0  # the face's residual several times weaker
    assert consistent.values["forensics.noise_mismatch"] < 0.2


def test_a_flat_picture_has_no_noise_to_compare() -> None:
    flat = textured() * 0 + 128
    readings = Readings()
    measure_noise(seen(sighting(flat)), readings)
    assert math.isnan(readings.values["forensics.noise_mismatch"])
    assert "no noise" in readings.reasons["forensics.noise_mismatch"]
