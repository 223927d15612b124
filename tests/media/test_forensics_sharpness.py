"""Blur signals on frames with a known answer: a sharp frame against a blurred one, a blurred face."""

from __future__ import annotations

import cv2
import numpy as np

from tests.support.forensic_frames import face_slice, frame, seen, sighting, textured
from workers.forensics.readings import Readings
from workers.forensics.sharpness import frame_grey, laplacian_variance, measure_sharpness


def test_a_blurred_frame_has_a_far_lower_laplacian_variance() -> None:
    sharp = textured()
    blurred = np.asarray(cv2.GaussianBlur(sharp, (0, 0), 3), np.uint8)
    assert laplacian_variance(frame_grey(blurred)) < laplacian_variance(frame_grey(sharp)) / 10


def test_a_face_blurrier_than_its_surroundings_has_a_low_sharpness_ratio() -> None:
    image = textured()
    rows, cols = face_slice()
    pasted = image.copy()
    pasted[rows, cols] = cv2.GaussianBlur(image[rows, cols], (0, 0), 3)
    readings = Readings()
    measure_sharpness([frame(pasted)], seen(sighting(pasted)), readings)
    assert readings.values["quality.face_sharpness_ratio"] < 0.2
    untouched = Readings()
    measure_sharpness([frame(image)], seen(sighting(image)), untouched)
    assert 0.7 < untouched.values["quality.face_sharpness_ratio"] < 1.4
    assert untouched.values["quality.blur_face"] > 10 * readings.values["quality.blur_face"]
    assert untouched.values["quality.blur_frame"] > readings.values["quality.blur_frame"]


def test_without_a_face_only_the_frame_is_measured() -> None:
    readings = Readings()
    measure_sharpness([frame(textured())], [], readings)
    assert readings.values["quality.blur_frame"] > 0
    assert readings.reasons["quality.blur_face"] == "no face"
    assert "quality.face_sharpness_ratio" in readings.reasons
