"""The CLI's human-readable result, on the shape the API serves (api/serialize.result_view)."""

from __future__ import annotations

from client.cli import describe_result
from client.types import ResultJson

RESULT: ResultJson = {
    "job_id": "3f0c0000-0000-4000-8000-000000000000",
    "verdict": "FAKE",
    "score": 0.81,
    "raw_score": 0.81,
    "thresholds": {"t_low": 0.5, "t_high": 0.5},
    "method": "weighted_average",
    "faces_found": 12,
    "frames_sampled": 8,
    "tracks": {
        "frames_with_face": 8,
        "detection": {"downscale": 0.6667, "min_face_px": 40.0, "keyframe_every": 4},
        "worst_track": 1,
        "tracks": [
            {"track_id": 0, "detections": [], "score": 0.2, "raw_fused": 0.2, "frames": 4, "per_model": {}},
            {"track_id": 1, "detections": [], "score": 0.81, "raw_fused": 0.81, "frames": 8, "per_model": {}},
        ],
    },
    "models": {
        "xception": {"frames": 8, "calibrated": 0.7, "aggregated": 0.69, "weight": 0.25, "aggregator": "mean"},
        "effort": {
            "frames": 0,
            "calibrated": None,
            "aggregated": None,
            "weight": 0.25,
            "aggregator": "mean",
            "error": "CheckpointError: effort.pth does not fit",
        },
    },
    "preprocessing": {
        "xception": {"crop": "square_1.3", "input_size": 256, "normalisation": "half"},
        "effort": {"crop": "square_1.3", "input_size": 224, "normalisation": "clip"},
    },
    "overrides": [],
    "media": "video",
    "signals": None,
    "video": None,
    "timings": {"total": 1.0},
    "model_pack": "seed-deepfakebench@2026.11-1",
    "test_pack": False,
    "calibration_version": None,
    "created_at": "2026-12-01T00:00:00+00:00",
}


def test_counts_the_tracks_not_the_keys_of_the_tracks_object() -> None:
    # The tracks object has four keys; this result has two tracks.
    assert "12 in 8 sampled frames, 2 track(s)" in describe_result(RESULT)


def test_each_model_line_says_what_the_model_was_fed() -> None:
    text = describe_result(RESULT)
    assert "calibrated 0.700" in text and "(square_1.3 256 px, half)" in text
    assert "effort.pth does not fit  (square_1.3 224 px, clip)" in text
    # Results stored before per-model preprocessing existed have none: the line stays as it was.
    old: ResultJson = {**RESULT, "preprocessing": {}}
    assert "px," not in describe_result(old)
