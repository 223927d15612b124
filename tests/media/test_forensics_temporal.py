"""Flicker and flow oddity between a frame and the next: a face that flickers or moves against its surroundings."""

from __future__ import annotations

import math

import numpy as np

from tests.support.forensic_frames import face_slice, seen, sighting, textured
from workers.forensics.readings import Readings
from workers.forensics.temporal import measure_temporal


def _brightened(image: np.ndarray, amount: int, face_only: bool) -> np.ndarray:
    out = image.astype(np.int16)
    if face_only:
        rows, cols = face_slice()
        out[rows, cols] += amount
    else:
        out += amount
    return np.clip(out, 0, 255).astype(np.uint8)


def test_a_face_that_brightens_on_its_own_flickers() -> None:
    image = textured()
    flicker, steady = Readings(), Readings()
    measure_temporal(seen(sighting(image, _brightened(image, 12, face_only=True))), flicker)
    # The whole scene brightening (a light switched on, auto-exposure) is no flicker of the face.
    measure_temporal(seen(sighting(image, _brightened(image, 12, face_only=False))), steady)
    assert flicker.values["forensics.flicker"] > 6
    assert steady.values["forensics.flicker"] < 0.5


def test_a_face_moving_against_still_surroundings_is_odd_and_a_pan_is_not() -> None:
    image = textured(seed=3)
    rows, cols = face_slice()
    moved = image.copy()
    moved[rows, cols] = np.roll(image, 5, axis=1)[rows, cols]  # the face alone shifts 5 px right
    panned = np.roll(image, 5, axis=1)  # everything shifts together
    odd, pan = Readings(), Readings()
    measure_temporal(seen(sighting(image, moved)), odd)
    measure_temporal(seen(sighting(image, panned)), pan)
    assert odd.values["temporal.flow_oddity"] > 0.6
    assert pan.values["temporal.flow_oddity"] < 0.2


def test_no_motion_and_no_next_frame_give_nan_with_a_reason() -> None:
    image = textured()
    still, alone = Readings(), Readings()
    measure_temporal(seen(sighting(image, image.copy())), still)
    assert math.isnan(still.values["temporal.flow_oddity"]) and still.reasons["temporal.flow_oddity"] == "no motion"
    assert still.values["forensics.flicker"] < 1e-6
    measure_temporal(seen(sighting(image)), alone)
    for name in ("forensics.flicker", "temporal.flow_oddity"):
        assert math.isnan(alone.values[name]) and "frame after it" in alone.reasons[name]
