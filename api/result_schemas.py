"""The parts of a job's result view (api.schemas.ResultView): core.results.JobResult.view() emits them, these models
document and check them."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ModelScoreView(BaseModel):
    """One model's score on the worst track (``error`` set, scores null: the model failed and was left out)."""

    frames: int
    aggregated: float | None
    calibrated: float | None
    weight: float = Field(description="Effective fusion weight: the pack's, times the feedback multiplier.")
    aggregator: str
    error: str | None = None


class BoxView(BaseModel):
    x1: float
    y1: float
    x2: float
    y2: float


class TrackDetectionView(BaseModel):
    frame_index: int
    timestamp_s: float
    box: BoxView


class TrackView(BaseModel):
    track_id: int
    detections: list[TrackDetectionView]
    score: float = Field(description="The track's P(fake), after any real-evidence cap.")
    raw_fused: float
    frames: int
    per_model: dict[str, float] = Field(description="Each working model's aggregated score on this track.")


class DetectionPlanView(BaseModel):
    downscale: float
    min_face_px: float
    keyframe_every: int | None


class TracksView(BaseModel):
    frames_with_face: int
    detection: DetectionPlanView | None = Field(description="How faces were searched for (null: older result).")
    worst_track: int | None = Field(description="The track that decided the verdict (null: no face).")
    tracks: list[TrackView]


class OverrideView(BaseModel):
    kind: str
    reason: str
    before: float
    after: float
    cues: list[str] = Field(
        default_factory=list, description="The forensic real-world cues that fired (forensic_real_cap only)."
    )


class FrameCountsView(BaseModel):
    requested: int
    decoded: int
    with_face: int
    missing: list[int] = Field(description="Sampled frame indices that did not decode.")


class VideoView(BaseModel):
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    container: str | None
    codec: str | None
    frames: FrameCountsView | None = Field(description="Frames the verdict rests on (null: older result).")


class PreprocessingView(BaseModel):
    crop: str
    input_size: int
    normalisation: str


class SignalReadingView(BaseModel):
    """The signals' own rule-based answer: never FAKE, always low confidence (core/scoring/signal_rules.py)."""

    source: str
    score: float | None = Field(description="Weighted deviation toward fake in [0, 1]; null: no ruled signal.")
    verdict: str = Field(description="REAL (nothing odd) or UNCERTAIN.")
    confidence: str
    deviations: dict[str, float]
    missing: list[str]


class SignalsView(BaseModel):
    """The forensic signals (core/signals.py SIGNALS describes each one)."""

    values: dict[str, float | None] = Field(description="Each signal's value; null: not computed (see reasons).")
    reasons: dict[str, str] = Field(description="Why each signal without a value could not be computed.")
    seconds: float
    scope: str | None = Field(
        description="Why the pack cannot judge this media (verdict NOT_APPLICABLE): non_photographic_faces or "
        "faces_too_small; null when it can."
    )
    reading: SignalReadingView | None = Field(
        description="The signals' rule-based reading, while no calibration fused them; the only answer of a "
        "NO_FACE video.",
    )
