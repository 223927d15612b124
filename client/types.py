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


class _OverrideJson(TypedDict):
    kind: str
    reason: str
    before: float
    after: float


class OverrideJson(_OverrideJson, total=False):
    cues: list[str]  # only for a cap by forensic real-world cues: the ones that fired


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


class SignalReadingJson(TypedDict):
    source: str
    score: float | None
    verdict: str  # REAL | UNCERTAIN: rules alone never say FAKE
    confidence: str
    deviations: dict[str, float]
    missing: list[str]


class SignalsJson(TypedDict):
    values: dict[str, float | None]
    reasons: dict[str, str]
    seconds: float
    scope: str | None  # non_photographic_faces | faces_too_small; set when the verdict is NOT_APPLICABLE
    reading: SignalReadingJson | None


class ThresholdsJson(TypedDict):
    t_low: float | None
    t_high: float | None


class ResultJson(TypedDict):
    job_id: str
    verdict: str  # REAL | FAKE | UNCERTAIN | NO_FACE | NOT_APPLICABLE
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
    signals: SignalsJson | None
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


class LatencyJson(TypedDict):
    fps: float
    frame_budget_ms: float
    per_frame_ms: float | None
    limit_ms: float
    warnings: list[str]


class SimulationStrategyJson(TypedDict):
    """One strategy of POST /v1/admin/simulate: its rates over final verdicts, times and flips."""

    name: str
    kind: str  # window | per_frame | whole_file
    strategy: Json | None
    fps: float
    t_low: float
    t_high: float
    videos: int
    real: int
    fake: int
    tpr: float | None
    tnr: float | None
    fpr: float | None
    fpr_any_time: float | None
    uncertain_rate: float
    undecided_rate: float
    mean_first_decision_s: float | None
    mean_stable_s: float | None
    mean_flips: float
    max_flips: int
    videos_over_flip_limit: int
    latency: LatencyJson


class TimelinePointJson(TypedDict):
    t: float
    score: float | None
    verdict: str | None


class OutcomeJson(TypedDict):
    strategy: str
    final: str | None
    first_decision_s: float | None
    stable_s: float | None
    flips: int
    points: list[TimelinePointJson]


class VideoTimelineJson(TypedDict):
    video_id: str
    name: str | None
    label: str  # REAL | FAKE
    outcomes: list[OutcomeJson]


class PerFrameThresholdsJson(TypedDict):
    averaging: str  # mean | ema
    t_low: float
    t_high: float
    target_fpr: float
    uncertain_band: float
    window: int
    ema_alpha: float
    videos: int
    real: int
    fake: int


class PerFrameFitJson(TypedDict):
    strategy: str
    thresholds: PerFrameThresholdsJson
    saved_to: str | None
    in_sample: bool


class SimulationJson(TypedDict):
    videos: int
    real: int
    fake: int
    flip_limit: int
    label_source: str  # feedback | labels
    calibration_version: str | None
    without_frame_scores: int
    unmatched_labels: list[str]
    strategies: list[SimulationStrategyJson]
    timelines: list[VideoTimelineJson]
    fit: PerFrameFitJson | None


class StreamDecisionStateJson(TypedDict):
    verdict: str | None  # REAL | FAKE | UNCERTAIN; None until enough frames with a face were scored
    score: float | None
    t_low: float | None
    t_high: float | None
    changes: int


class StreamFrameCountsJson(TypedDict):
    received: int
    scored: int
    with_face: int
    dropped: int


class StreamLinksJson(TypedDict):
    self: str
    websocket: str
    frames: str
    events: str
    job: str


class StreamJson(TypedDict):
    id: str  # also the stream's job id
    status: str  # open | closing | closed
    strategy: Json
    updates: str  # changes | frames
    decision: StreamDecisionStateJson
    frames: StreamFrameCountsJson
    webhook_url: str | None
    metadata: Json
    close_reason: str | None
    created_at: str
    closed_at: str | None
    links: StreamLinksJson


class StreamFramesJson(TypedDict):
    seqs: list[int]
    frames_received: int
    frames_dropped: int


class HeatmapJson(TypedDict):
    member: str
    frame_index: int
    timestamp_s: float
    track_id: int
    score: float  # the model's P(fake) on this crop
    method: str | None
    error: str | None  # why this model could not be explained (url is None then)
    url: str | None  # the PNG: the crop beside its heatmap overlay


class HeatmapListJson(TypedDict):
    job_id: str
    heatmaps: list[HeatmapJson]
