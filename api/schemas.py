"""Pydantic models for request validation and the OpenAPI document: one source for both (see api/openapi.py).

Response models describe what api/serialize.py emits. Free-form JSON produced by the workers (per-model
detail, timings, calibration metrics) stays ``dict[str, Any]``: documented as an object, not pinned field by
field, so a new worker-side key is not an API break.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator
from werkzeug.datastructures import FileStorage

from api.boundary import parse_json
from core.vocabulary import DeliveryState, FeedbackCategory, JobStatus, Label, SamplingStrategy

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


class JobForm(BaseModel):
    """multipart/form-data body of POST /v1/jobs. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    file: UploadFile = Field(description="The video: MP4/MOV, WebM/Matroska or AVI, judged by its content.")
    webhook_url: str | None = Field(
        None, max_length=2048, description="http(s) URL to receive job.succeeded / job.failed webhooks."
    )
    max_frames: int | None = Field(
        None, ge=1, le=MAX_FRAMES_LIMIT, description="Frames to sample (default: the server's VERITY_MAX_FRAMES)."
    )
    sampling: SamplingStrategy = Field(SamplingStrategy.UNIFORM, description="Frame sampling strategy.")
    metadata: JsonObjectText = Field(None, description="A JSON object (as text) stored with the job.")

    @field_validator("file")
    @classmethod
    def _file_part(cls, value: Any) -> FileStorage:
        if not isinstance(value, FileStorage):
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


class JobList(BaseModel):
    jobs: list[JobView]
    next_cursor: str | None


class Thresholds(BaseModel):
    t_low: float | None
    t_high: float | None


class ResultView(BaseModel):
    job_id: str
    verdict: str = Field(description="REAL, FAKE or UNCERTAIN (or NO_FACE when no face was found).")
    score: float | None = Field(description="Calibrated probability that the video is fake.")
    raw_score: float | None
    method: str | None = Field(description="Fusion method.")
    thresholds: Thresholds
    models: dict[str, Any] = Field(description="Per-model scores and calibration.")
    tracks: dict[str, Any] = Field(description="Per face-track detail.")
    overrides: list[Any]
    faces_found: int
    frames_sampled: int
    video: dict[str, Any]
    timings: dict[str, Any]
    preprocessing: dict[str, Any] = Field(
        description="Per model: the face-crop convention, input size and normalisation its format prescribes."
    )
    model_pack: str | None
    test_pack: bool
    calibration_version: str | None
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


class CalibrationFitIn(BaseModel):
    """All optional; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    target_fpr: float | None = None
    uncertain_band: float | None = None
    held_out_fraction: float | None = None
    min_per_class: int | None = None
    min_isotonic_labels: int | None = None
    method: str | None = Field(None, description="Fusion method.")
    seed: int | None = None
    auto_activate: bool = False


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
