"""The scope check (core/scope.py): flat, drawn faces and faces too small for every member are not judged."""

from __future__ import annotations

import math

import numpy as np

from core.scope import MAX_FLAT_SHARE, MAX_UPSCALE, ScopeReason, flat_share, judge_scope


def _cartoon_face(side: int = 96) -> np.ndarray:
    """A drawn face: flat skin, two flat eyes and a mouth, hard edges, no sensor noise."""
    yy, xx = np.mgrid[:side, :side]
    face = np.full((side, side), 40.0)
    face[((yy - side / 2) / (side * 0.45)) ** 2 + ((xx - side / 2) / (side * 0.35)) ** 2 <= 1] = 190.0
    for cx in (side * 0.35, side * 0.65):
        face[(yy - side * 0.4) ** 2 + (xx - cx) ** 2 <= (side * 0.06) ** 2] = 20.0
    face[int(side * 0.68) : int(side * 0.72), int(side * 0.38) : int(side * 0.62)] = 90.0
    return face


def _photographic_face(side: int = 96, seed: int = 0) -> np.ndarray:
    """The same shapes with shading and a camera's noise."""
    rng = np.random.default_rng(seed)
    shading = np.linspace(0, 30, side)[None, :]
    return _cartoon_face(side) + shading + rng.normal(0, 2.0, (side, side))


def test_a_drawn_face_is_mostly_flat_and_a_photographed_one_is_not() -> None:
    mask = np.ones((96, 96), bool)
    assert flat_share(_cartoon_face(), mask) > 0.9
    assert flat_share(_photographic_face(), mask) < 0.1


def test_a_flat_face_is_not_photographic() -> None:
    mask = np.ones((96, 96), bool)
    assert judge_scope(flat_share(_cartoon_face(), mask), 200.0, [224, 256]) is ScopeReason.NON_PHOTOGRAPHIC
    assert judge_scope(flat_share(_photographic_face(), mask), 200.0, [224, 256]) is None


def test_faces_too_small_for_every_member_are_out_of_scope() -> None:
    smallest = 224
    too_small = smallest / MAX_UPSCALE - 1
    assert judge_scope(0.1, too_small, [smallest, 380]) is ScopeReason.FACES_TOO_SMALL
    # One member whose input is small enough judges them.
    assert judge_scope(0.1, too_small, [smallest, 64]) is None
    assert judge_scope(0.1, smallest / MAX_UPSCALE, [smallest]) is None


def test_nothing_measured_is_no_reason_to_abstain() -> None:
    assert judge_scope(math.nan, math.nan, [224]) is None
    assert judge_scope(MAX_FLAT_SHARE, 100.0, []) is None  # at the limit, and no member to compare with
    assert math.isnan(flat_share(np.zeros((1, 5)), np.ones((1, 5), bool)))
    assert math.isnan(flat_share(np.zeros((5, 5)), np.zeros((5, 5), bool)))
