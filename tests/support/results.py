"""A full job result with every part filled, for the tests of its mappings and of the API's view of it."""

from __future__ import annotations

from core.results import (
    Box,
    DetectionPlan,
    FrameCounts,
    JobResult,
    ModelScore,
    Override,
    Preprocessing,
    Track,
    TrackDetection,
    Tracks,
    VideoMeta,
)
from core.vocabulary import Verdict

BOX = Box(10.0, 20.0, 110.0, 140.0)
RESULT = JobResult(
    verdict=Verdict.FAKE,
    score=0.81,
    raw_score=0.84,
    method="weighted_average",
    t_low=0.3,
    t_high=0.7,
    frames_sampled=8,
    faces_found=9,
    tracks=Tracks(
        frames_with_face=8,
        detection=DetectionPlan(0.6667, 60.0, 4),
        worst_track=1,
        tracks=(
            Track(0, (TrackDetection(0, 0.0, BOX),), 0.2, 0.2, 1, {"meso": 0.2}),
            Track(1, (TrackDetection(3, 0.125, BOX), TrackDetection(6, 0.25, BOX)), 0.81, 0.84, 2, {"meso": 0.81}),
        ),
    ),
    per_model={
        "meso": ModelScore("confident", 1.0, 2, 0.8, 0.81),
        "broken": ModelScore("mean", 0.5, 0, None, None, "CheckpointError: does not fit"),
    },
    overrides=(Override("real_evidence_cap", "two reliable models agree", 0.9, 0.84),),
    timings={"probe": 0.01, "total": 1.5},
    video=VideoMeta(1280, 720, 25.0, 250, 10.0, "mp4", "h264", FrameCounts(9, 8, 8, (240,))),
    preprocessing={"meso": Preprocessing("square_1.3", 256, "half")},
    model_pack="seed@1",
    test_pack=False,
    calibration_version="v3",
)

# A REAL result with no faces: for tests about the job's lifecycle, not its content.
MINIMAL_RESULT = JobResult(
    verdict=Verdict.REAL,
    score=0.1,
    raw_score=0.1,
    method="weighted_average",
    t_low=0.3,
    t_high=0.7,
    frames_sampled=0,
    faces_found=0,
    tracks=Tracks(frames_with_face=0, detection=None, worst_track=None),
    model_pack="test@1",
)
