"""The numpy-only pieces of the forensic signals: regions, the track reduction, the spectrum, the frame pairs."""

from __future__ import annotations

import math

import numpy as np

from workers.forensics.pairs import PAIRS, companion_indices
from workers.forensics.readings import Readings, reduce_tracks
from workers.forensics.regions import face_region, inner_box
from workers.forensics.spectrum import hf_share, radial_power, spectrum_slope


def test_the_ring_surrounds_the_face_and_excludes_the_box() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    region = face_region(image, (50.0, 60.0, 150.0, 160.0))
    assert region is not None
    assert region.window == (20, 30, 180, 190)  # 1.6 x the 100 px box around its centre
    assert region.grey.shape == (160, 160)
    assert not (region.face & region.ring).any()
    assert region.face.sum() == 80 * 80  # the box less 10 % on each side
    assert region.ring.sum() == 160 * 160 - 100 * 100


def test_a_box_at_the_frame_edge_is_clipped_and_one_outside_has_no_region() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    assert inner_box((-20.0, -20.0, 40.0, 40.0), 100, 100) == (0, 0, 34, 34)
    assert face_region(image, (150.0, 150.0, 190.0, 190.0)) is None


def test_tracks_reduce_to_the_most_suspicious_median() -> None:
    measured = [(0, 1.0), (0, 3.0), (0, 2.0), (1, 5.0), (1, math.nan), (1, 7.0)]
    assert reduce_tracks(measured, +1) == 6.0
    assert reduce_tracks(measured, -1) == 2.0
    assert reduce_tracks(measured, 0) == 4.0
    assert math.isnan(reduce_tracks([(0, math.nan)], +1))


def test_readings_keep_a_reason_only_for_a_missing_value() -> None:
    readings = Readings()
    readings.put("forensics.flicker", math.nan, "no pair")
    assert math.isnan(readings.values["forensics.flicker"]) and readings.reasons == {"forensics.flicker": "no pair"}
    readings.put("forensics.flicker", 0.5, "unused")
    assert readings.values["forensics.flicker"] == 0.5 and readings.reasons == {}


def _noise(side: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(128, 20, (side, side)).astype(np.float32)


def _smoothed(patch: np.ndarray, passes: int = 4) -> np.ndarray:
    out = patch.copy()
    for _ in range(passes):  # a 3x3 box blur, repeated: numpy only
        padded = np.pad(out, 1, mode="edge")
        total = np.zeros_like(out)
        for dy in range(3):
            for dx in range(3):
                total += padded[dy : dy + out.shape[0], dx : dx + out.shape[1]]
        out = total / 9
    return out


def test_a_smoothed_patch_has_less_high_frequency_energy_and_a_steeper_spectrum() -> None:
    textured = _noise(64)
    smooth = _smoothed(textured)
    sharp_share, smooth_share = hf_share(*radial_power(textured)), hf_share(*radial_power(smooth))
    assert 0.3 < sharp_share < 0.8  # white noise: energy spread evenly, about the top octave's share of the area
    assert smooth_share < sharp_share / 5
    assert spectrum_slope(*radial_power(smooth)) < spectrum_slope(*radial_power(textured)) - 2


def test_white_noise_has_a_flat_spectrum() -> None:
    assert abs(spectrum_slope(*radial_power(_noise(128, 1)))) < 0.5


def test_companions_follow_evenly_spread_sampled_frames_within_the_video() -> None:
    sampled = list(range(0, 320, 10))
    after = companion_indices(sampled, 320)
    assert len(after) == PAIRS and after[0] == 1 and after[-1] == 311
    assert companion_indices([0, 5, 9], 10) == [1, 6]  # nothing past the last frame
    assert companion_indices([0], 1) == []
