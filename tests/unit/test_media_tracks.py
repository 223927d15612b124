"""Greedy IoU track linking on synthetic boxes."""

from __future__ import annotations

import pytest

from workers.media.tracks import iou, link_tracks


def test_iou_hand_computed() -> None:
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0
    assert iou((0, 0, 0, 10), (0, 0, 0, 10)) == 0.0  # no area, no division by zero
    assert iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(4 / 100)


def box(x: float, y: float = 100, size: float = 40) -> tuple[float, float, float, float]:
    return (x, y, x + size, y + size)


def test_single_face_is_one_track() -> None:
    frames = [[box(100 + 5 * t)] for t in range(10)]
    assert link_tracks(frames) == [[(t, 0) for t in range(10)]]


def test_two_people_crossing_paths_keep_their_tracks() -> None:
    # A walks right, B walks left, 8 px per frame on 40 px faces; they overlap in the middle frames.
    # Detection order flips halfway (detectors sort by score, not identity), so order alone would swap them.
    frames = []
    for t in range(12):
        a, b = box(100 + 8 * t, y=100), box(188 - 8 * t, y=110)
        frames.append([a, b] if t < 6 else [b, a])
    tracks = link_tracks(frames)
    assert len(tracks) == 2
    a_track = next(track for track in tracks if track[0] == (0, 0))
    b_track = next(track for track in tracks if track[0] == (0, 1))
    assert a_track == [(t, 0 if t < 6 else 1) for t in range(12)]
    assert b_track == [(t, 1 if t < 6 else 0) for t in range(12)]


def test_highest_iou_claims_first_not_track_order() -> None:
    # Two faces close together: X at 100, Y at 110. Next frame: d0 at 108 (Y moved 2 px), d1 at 88 (X moved
    # 12 px). Matching track by track, X would take d0 (its best, 0.67) and leave Y only d1 (0.29, under
    # the threshold): Y's track would break. Highest IoU first pairs Y-d0 (0.90), then X-d1 (0.54).
    x, y, d0, d1 = box(100), box(110), box(108), box(88)
    assert iou(y, d0) > iou(x, d0) > iou(x, d1) > 0.3 > iou(y, d1)
    tracks = link_tracks([[x, y], [d0, d1]])
    assert sorted(tracks) == [[(0, 0), (1, 1)], [(0, 1), (1, 0)]]


def test_gap_up_to_max_gap_is_bridged() -> None:
    frames = [[box(100)], [box(102)], [], [], [box(104)], [box(106)]]
    assert link_tracks(frames, max_gap=2) == [[(0, 0), (1, 0), (4, 0), (5, 0)]]


def test_gap_longer_than_max_gap_starts_a_new_track() -> None:
    frames = [[box(100)], [box(102)], [], [], [], [box(104)]]
    assert link_tracks(frames, max_gap=2) == [[(0, 0), (1, 0)], [(5, 0)]]
    assert link_tracks(frames, max_gap=3) == [[(0, 0), (1, 0), (5, 0)]]


def test_new_face_appearing_gets_its_own_track_and_sorting_is_longest_first() -> None:
    frames = [[box(100)], [box(100)], [box(100), box(400)], [box(400), box(100)], [box(100)]]
    tracks = link_tracks(frames)
    assert tracks == [[(0, 0), (1, 0), (2, 0), (3, 1), (4, 0)], [(2, 1), (3, 0)]]


def test_low_overlap_does_not_link() -> None:
    # A jump of 30 px on a 40 px face: IoU 400 / 2800 = 0.14, under the 0.3 threshold.
    frames = [[box(100)], [box(130)]]
    assert link_tracks(frames) == [[(0, 0)], [(1, 0)]]
    assert link_tracks(frames, iou_threshold=0.1) == [[(0, 0), (1, 0)]]


def test_empty_input() -> None:
    assert link_tracks([]) == []
    assert link_tracks([[], []]) == []
