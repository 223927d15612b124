"""core.results: the one result type and its mappings (columns, webhook body, API view), without torch or a
database."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace

from core import payloads
from core.results import (
    DetectionPlan,
    FrameRow,
    JobResult,
    Tracks,
)
from core.vocabulary import MediaKind, Verdict
from tests.support.results import BOX, RESULT


def _through_json(value: object) -> object:
    """What a JSON column or an HTTP body gives back."""
    return json.loads(json.dumps(value))


def test_columns_round_trip_through_json() -> None:
    columns = _through_json(RESULT.columns())
    assert isinstance(columns, dict)
    assert JobResult.from_columns(columns) == RESULT


def test_a_no_face_result_round_trips() -> None:
    no_face = replace(
        RESULT,
        verdict=Verdict.NO_FACE,
        score=None,
        raw_score=None,
        per_model={},
        overrides=(),
        tracks=Tracks(0, DetectionPlan(1.0, 40.0, 4), None),
    )
    columns = _through_json(no_face.columns())
    assert isinstance(columns, dict)
    assert columns["tracks"]["tracks"] == [] and columns["tracks"]["worst_track"] is None
    assert JobResult.from_columns(columns) == no_face


def test_track_ids_are_ints_after_a_round_trip() -> None:
    columns = _through_json(RESULT.columns())
    assert isinstance(columns, dict)
    back = JobResult.from_columns(columns)
    assert [t.track_id for t in back.tracks.tracks] == [0, 1] and back.tracks.worst_track == 1
    assert all(type(t.track_id) is int for t in back.tracks.tracks)
    worst = next(t for t in back.tracks.tracks if t.track_id == back.tracks.worst_track)
    assert worst.score == back.score


def test_frame_rows_round_trip() -> None:
    row = FrameRow(3, 0.125, 1, BOX, 0.99, "meso", 0.8)
    columns = _through_json(row.columns())
    assert isinstance(columns, dict)
    assert columns["box"] == {"x1": 10.0, "y1": 20.0, "x2": 110.0, "y2": 140.0}
    assert FrameRow.from_columns(columns) == row


def test_an_older_stored_row_reads_with_its_missing_parts_empty() -> None:
    old = {
        "verdict": "REAL",
        "score": 0.1,
        "per_model": {"meso": {"frames": 2, "aggregated": 0.6, "calibrated": 0.6, "weight": 1.0}},
        "tracks": {"frames_with_face": 2, "worst_track": 0, "tracks": []},
        "overrides": {},
        "video": {},
    }
    result = JobResult.from_columns(old)
    assert result.video is None and result.preprocessing == {} and result.tracks.detection is None
    assert result.media is MediaKind.VIDEO  # every result before images was a video
    assert result.per_model["meso"].calibrated == 0.6 and result.per_model["meso"].error is None


def test_webhook_body() -> None:
    job_id = uuid.uuid4()
    body = payloads.succeeded(job_id, RESULT)
    assert body["type"] == "job.succeeded" and set(body) == {"type", "timestamp", "data"}
    assert body["data"] == {
        "job_id": str(job_id),
        "status": "SUCCEEDED",
        "media": "video",
        "verdict": "FAKE",
        "score": 0.81,
        "thresholds": {"t_low": 0.3, "t_high": 0.7},
        "method": "weighted_average",
        "models": {
            "meso": {"score": 0.81, "weight": 1.0, "error": None},
            "broken": {"score": None, "weight": 0.5, "error": "CheckpointError: does not fit"},
        },
        "model_pack": "seed@1",
        "test_pack": False,
        "calibration_version": "v3",
        "scope": None,
        "result_url": f"/v1/jobs/{job_id}/result",
    }


def test_api_view_renames_only_what_the_api_always_called_otherwise() -> None:
    view = RESULT.view()
    columns = RESULT.columns()
    assert view["models"] == columns["per_model"] and view["tracks"] == columns["tracks"]
    assert view["thresholds"] == {"t_low": 0.3, "t_high": 0.7}
    assert view["overrides"] == columns["overrides"]["applied"]
    assert [t["track_id"] for t in view["tracks"]["tracks"]] == [0, 1]
    assert view["verdict"] == "FAKE" and "error" not in view["models"]["meso"]
    # The `video` column also holds the media kind, which the view shows at the top.
    assert columns["video"] == {**view["video"], "media": view["media"]} and view["media"] == "video"
    # `signals` is NOT NULL in the row: {} there, null in the view, when none were computed.
    assert columns["signals"] == {} and view["signals"] is None
    # `heatmaps` are listed by GET /v1/jobs/<id>/heatmaps (with their URLs), not in the result view.
    assert columns["heatmaps"] == [] and "heatmaps" not in view
    same = set(columns) - {"per_model", "overrides", "t_low", "t_high", "video", "signals", "heatmaps"}
    assert {k: view[k] for k in same} == {k: columns[k] for k in same}


def test_an_image_result_keeps_its_media_kind_without_a_column_of_its_own() -> None:
    image = replace(RESULT, media=MediaKind.IMAGE)
    columns = _through_json(image.columns())
    assert isinstance(columns, dict)
    assert columns["video"]["media"] == "image" and "media" not in columns
    assert JobResult.from_columns(columns) == image
    assert image.view()["media"] == "image" and payloads.succeeded(uuid.uuid4(), image)["data"]["media"] == "image"
    bare = replace(image, video=None).columns()
    assert bare["video"] == {"media": "image"} and JobResult.from_columns(bare).video is None
