"""core.explain_frames: the crops a job's heatmaps explain."""

from __future__ import annotations

from typing import Any

import pytest

from core.explain_frames import decisive_rows


def test_the_worst_tracks_highest_scores_come_first() -> None:
    tracks = [0, 1, 1, 0, 1, 1]
    scores = [0.99, 0.2, 0.9, 0.95, 0.5, 0.7]
    assert decisive_rows(tracks, scores, worst_track=1, per_member=3) == [2, 5, 4]


def test_fewer_detections_than_asked_gives_them_all() -> None:
    assert decisive_rows([3, 3], [0.1, 0.4], worst_track=3, per_member=5) == [1, 0]


def test_ties_keep_the_earliest_frame_first() -> None:
    assert decisive_rows([0, 0, 0], [0.5, 0.8, 0.8], worst_track=0, per_member=2) == [1, 2]


def test_a_track_without_detections_gives_none() -> None:
    assert decisive_rows([0, 0], [0.5, 0.6], worst_track=7, per_member=3) == []


@pytest.mark.parametrize(("tracks", "scores", "k"), [([0], [0.5], 0), ([0, 1], [0.5], 2), ([[0]], [[0.5]], 1)])
def test_bad_arguments_are_refused(tracks: list[Any], scores: list[Any], k: int) -> None:
    with pytest.raises(ValueError):
        decisive_rows(tracks, scores, worst_track=0, per_member=k)
