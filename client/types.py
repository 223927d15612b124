"""The server's JSON as the client sees it: TypedDicts for a job, a result and their parts.

The client imports nothing of the server, so these restate api/schemas.py's response models;
tests/integration/test_client_contract.py checks their keys against /openapi.json.
"""

from __future__ import annotations

from typing import Any, TypedDict

Json = dict[str, Any]


class ErrorJson(TypedDict):
    code: str
    message: str


class JobLinksJson(TypedDict):
    self: str
    result: str


class JobJson(TypedDict):
    id: str
    status: str  # QUEUED | RUNNING | SUCCEEDED | FAILED | CANCELLED
    stage: str | None
    progress: float
    filename: str | None
    content_type: str | None
    size_bytes: int | None
    sha256: str | None
    params: Json
    metadata: Json
    webhook_url: str | None
    idempotency_key: str | None
    attempt: int
    error: ErrorJson | None
    model_pack: str | None
    calibration_version: str | None
    created_at: str
    updated_at: str | None
    started_at: str | None
    finished_at: str | None
    links: JobLinksJson


class _ModelScoreJson(TypedDict):
    frames: int
    aggregated: float | None
    calibrated: float | None
    weight: float
    aggregator: str


# A base class, not NotRequired[]: under postponed annotations TypedDict cannot see a NotRequired.
class ModelScoreJson(_ModelScoreJson, total=False):
    error: str | None  # only for a model that failed


class BoxJson(TypedDict):
    x1: float
    y1: float
    x2: float
    y2: float


class TrackDetectionJson(TypedDict):
    frame_index: int
    timestamp_s: float
    box: BoxJson


class TrackJson(TypedDict):
    track_id: int
    detections: list[TrackDetectionJson]
    score: float
    raw_fused: float
    frames: int
    per_model: dict[str, float]


class DetectionPlanJson(TypedDict):
    downscale: float
    min_face_px: float
    keyframe_every: int | None


class TracksJson(TypedDict):
    frames_with_face: int
    detection: DetectionPlanJson | None
    worst_track: int | None
    tracks: list[TrackJson]


class OverrideJson(TypedDict):
    kind: str
    reason: str
    before: float
    after: float


class FrameCountsJson(TypedDict):
    requested: int
    decoded: int
    with_face: int
    missing: list[int]


class VideoJson(TypedDict):
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    container: str | None
    codec: str | None
    frames: FrameCountsJson | None


class PreprocessingJson(TypedDict):
    crop: str
    input_size: int
    normalisation: str


class ThresholdsJson(TypedDict):
    t_low: float | None
    t_high: float | None


class ResultJson(TypedDict):
    job_id: str
    verdict: str  # REAL | FAKE | UNCERTAIN | NO_FACE
    score: float | None
    raw_score: float | None
    method: str | None
    thresholds: ThresholdsJson
    models: dict[str, ModelScoreJson]
    tracks: TracksJson
    overrides: list[OverrideJson]
    faces_found: int
    frames_sampled: int
    media: str  # image | video
    video: VideoJson | None
    timings: dict[str, float]
    preprocessing: dict[str, PreprocessingJson]
    model_pack: str | None
    test_pack: bool
    calibration_version: str | None
    created_at: str


# A base class, not NotRequired[]: under postponed annotations TypedDict cannot see a NotRequired.
class JobWithResultJson(JobJson, total=False):
    """POST /v1/jobs with ``wait``: the job, with its result once it ended (null unless it SUCCEEDED)."""

    result: ResultJson | None


class BatchItemJson(TypedDict):
    job_id: str
    filename: str | None
    status: str
    verdict: str | None
    score: float | None
    error: str | None  # the error code of an item that FAILED
    links: JobLinksJson


class BatchLinksJson(TypedDict):
    self: str


class BatchJson(TypedDict):
    id: str
    status: str  # QUEUED | RUNNING | COMPLETED
    total: int
    counts: dict[str, int]
    items: list[BatchItemJson]
    webhook_url: str | None
    per_item_webhooks: bool
    idempotency_key: str | None
    created_at: str
    completed_at: str | None
    links: BatchLinksJson
