"""Pydantic models for request validation and the OpenAPI document: one source for both (see api/openapi.py).

Response models describe what api/serialize.py emits. A job's result is typed field by field (its one shape is
core.results.JobResult); free-form JSON (job metadata, calibration metrics, webhook payloads) stays
``dict[str, Any]``: documented as an object, not pinned field by field.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, create_model, field_validator
from werkzeug.datastructures import FileStorage

from api.boundary import parse_json
from api.result_schemas import ModelScoreView, OverrideView, PreprocessingView, SignalsView, TracksView, VideoView
from core.scoring.recalibration_config import KNOBS
from core.vocabulary import DeliveryState, FeedbackCategory, JobStatus, Label, MediaKind, SamplingStrategy, Verdict

MAX_FRAMES_LIMIT = 300
METADATA_MAX_CHARS = 16_384


# A multipart file part: validated as werkzeug's FileStorage, documented as binary content.
UploadFile = Annotated[Any, WithJsonSchema({"type": "string", "format": "binary"})]


# --- errors ------------------------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable machine-readable code, e.g. NOT_FOUND, LIMIT_EXCEEDED.")
    message: str = Field(description="Human-readable explanation.")


class ErrorBody(BaseModel):
    """Every error, whatever the status: {"error": {"code": "...", "message": "..."}}."""

    error: ErrorDetail


# --- jobs --------------------------------------------------------------------------------------------------


def _json_object(value: Any) -> Any:
    """The metadata field's text, parsed through the API's boundary (depth, NUL, surrogates, NaN refused)."""
    if value == "":
        return None  # an empty field: no metadata
    if not isinstance(value, str):
        return value  # refused by the dict validation that follows
    if len(value) > METADATA_MAX_CHARS:
        raise ValueError(f"must be at most {METADATA_MAX_CHARS} characters")
    parsed = parse_json(value)
    if not isinstance(parsed, dict):
        raise ValueError("must be a JSON object")
    return parsed


# Sent as text (a form field), validated and handed to the route as the parsed object.
JsonObjectText = Annotated[
    Annotated[dict[str, Any], WithJsonSchema({"type": "string", "maxLength": METADATA_MAX_CHARS})] | None,
    BeforeValidator(_json_object),
]


def _no_default(schema: dict[str, Any]) -> None:
    schema.pop("default", None)  # binary content has no null default: the part is simply absent


class JobForm(BaseModel):
    """multipart/form-data body of POST /v1/jobs. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    # Exactly one of file, source_url and upload_id (checked by the route).
    file: UploadFile = Field(
        None,
        json_schema_extra=_no_default,
        description="The video (MP4/MOV, WebM/Matroska, AVI; animated GIF, PNG or WebP) or still image (JPEG, PNG, "
        "WebP, AVIF), judged by its content.",
    )
    source_url: str | None = Field(
        None,
        max_length=2048,
        description="Instead of a file: an http(s) URL serving the video itself, fetched by the worker (no "
        "credentials, no private addresses; redirects are followed only to public addresses).",
    )
    upload_id: str | None = Field(
        None, max_length=64, description="Instead of a file: a presigned upload (POST /v1/uploads) already PUT."
    )
    webhook_url: str | None = Field(
        None, max_length=2048, description="http(s) URL to receive job.succeeded / job.failed webhooks."
    )
    max_frames: int | None = Field(
        None, ge=1, le=MAX_FRAMES_LIMIT, description="Frames to sample (default: the server's VERITY_MAX_FRAMES)."
    )
    sampling: SamplingStrategy = Field(SamplingStrategy.UNIFORM, description="Frame sampling strategy.")
    metadata: JsonObjectText = Field(None, description="A JSON object (as text) stored with the job.")
    explain: bool | None = Field(
        None,
        description="true: also make class-activation heatmaps of the decisive face crops, per model (GET "
        "/v1/jobs/{id}/heatmaps); costs the worker extra time. Unset: the server's VERITY_EXPLAIN_DEFAULT.",
    )
    wait: float | None = Field(
        None,
        ge=0,
        le=3600,
        allow_inf_nan=False,
        description="Seconds to wait for the verdict, cut to VERITY_MAX_WAIT_S: 200 with the job and its result if "
        "it ends in time, else the usual 202. Not part of the request an Idempotency-Key names.",
    )

    @field_validator("file")
    @classmethod
    def _file_part(cls, value: Any) -> FileStorage | None:
        if value is not None and not isinstance(value, FileStorage):
            raise ValueError("must be a file part of a multipart/form-data body")
        return value


class JobHeaders(BaseModel):
    idempotency_key: str | None = Field(
        None,
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Retrying with the same key (per tenant) returns the first job instead of creating another.",
    )


class JobListQuery(BaseModel):
    status: JobStatus | None = Field(None, description="Only jobs in this status.")
    cursor: str | None = Field(None, max_length=512, description="next_cursor from the previous page.")
    limit: int = Field(20, ge=1, le=100)


class JobLinks(BaseModel):
    self_: str = Field(alias="self")
    result: str


class JobParams(BaseModel):
    model_config = ConfigDict(extra="allow")
    max_frames: int
    sampling: str


class JobView(BaseModel):
    id: str
    status: JobStatus
    stage: str | None
    progress: float = Field(ge=0, le=1)
    filename: str | None = Field(description="The client's filename, sanitised, for display only.")
    content_type: str | None
    size_bytes: int | None
    sha256: str | None
    params: JobParams
    metadata: dict[str, Any]
    webhook_url: str | None
    idempotency_key: str | None
    attempt: int
    error: ErrorDetail | None
    model_pack: str | None
    calibration_version: str | None
    created_at: datetime
    updated_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    links: JobLinks


class JobWithResult(JobView):
    """A job a ``wait`` saw end, with its result (null unless it SUCCEEDED), or an Idempotency-Key's replay."""

    result: ResultView | None = None


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None


class Thresholds(BaseModel):
    t_low: float | None
    t_high: float | None


class ResultView(BaseModel):
    job_id: str
    verdict: Verdict = Field(
        description="REAL, FAKE, UNCERTAIN, NO_FACE (no face found) or NOT_APPLICABLE (signals.scope)."
    )
    score: float | None = Field(description="Calibrated probability that the video is fake.")
    raw_score: float | None
    method: str | None = Field(description="Fusion method.")
    thresholds: Thresholds
    models: dict[str, ModelScoreView] = Field(description="Per-model scores and calibration.")
    tracks: TracksView = Field(description="Per face-track detail.")
    overrides: list[OverrideView]
    faces_found: int
    frames_sampled: int
    media: MediaKind = Field(description="image: a still scored as one frame; video: a video or an animation.")
    video: VideoView | None
    timings: dict[str, float] = Field(description="Seconds per pipeline stage, and the total.")
    preprocessing: dict[str, PreprocessingView] = Field(
        description="Per model: the face-crop convention, input size and normalisation its format prescribes."
    )
    model_pack: str | None
    test_pack: bool
    calibration_version: str | None
    signals: SignalsView | None = Field(description="The forensic signals (null: an older result).")
    created_at: datetime


# --- feedback ----------------------------------------------------------------------------------------------


class FeedbackIn(BaseModel):
    """Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    label: Label
    category: FeedbackCategory = FeedbackCategory.OTHER
    note: str | None = Field(None, max_length=4000)


class FeedbackQuery(BaseModel):
    all: Literal["1", "true", "0", "false"] | None = Field(None, description="1/true: include superseded labels.")
    label: Label | None = None
    since: datetime | None = None
    until: datetime | None = None


class FeedbackView(BaseModel):
    id: int
    job_id: str
    moderator_key_id: int
    label: Label
    category: FeedbackCategory
    note: str | None
    current: bool
    created_at: datetime


class FeedbackList(BaseModel):
    feedback: list[FeedbackView]


# --- webhook deliveries ------------------------------------------------------------------------------------


class DeliveryView(BaseModel):
    id: str
    webhook_id: str = Field(description="The webhook-id header the receiver saw; stable across retries.")
    job_id: str
    event: str
    url: str
    state: DeliveryState
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime | None
    delivered_at: datetime | None
    payload: dict[str, Any]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryView]


# --- calibrations (admin) ----------------------------------------------------------------------------------


# All optional, unknown fields refused; the knobs come from their one declaration (RecalibrationConfig).
_FIT_FIELDS: dict[str, Any] = {knob.option: (knob.kind | None, Field(None, description=knob.help)) for _, knob in KNOBS}
CalibrationFitIn = create_model(
    "CalibrationFitIn",
    __config__=ConfigDict(extra="forbid"),
    __doc__="All optional; unknown fields are refused.",
    **_FIT_FIELDS,
    auto_activate=(bool, False),
)


class CalibrationView(BaseModel):
    """A calibration version (a fit that found no new labels returns {"skipped", "version"} instead)."""

    model_config = ConfigDict(extra="allow")
    version: str
    status: str | None = None
    created_at: datetime | None = None
    activated_at: datetime | None = None
    thresholds: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None
    skipped: str | None = None


class CalibrationList(BaseModel):
    active: str | None
    calibrations: list[CalibrationView]


class ReplayQuery(BaseModel):
    version: str | None = Field(None, description="A calibration version, 'none', or omit for the job's own.")
    method: str | None = Field(None, description="Fusion method to replay under.")
    aggregator: list[str] | None = Field(None, description="MODEL=SPEC, repeatable.")


class ReplayView(BaseModel):
    model_config = ConfigDict(extra="allow")


# --- health ------------------------------------------------------------------------------------------------


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(extra="allow")
    status: Literal["ready", "unavailable"]
    checks: dict[str, Any] = Field(description="'ok' or 'error: ...' per dependency.")
