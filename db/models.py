"""SQLAlchemy 2.0 typed models: the schema of DESIGN §4. Alembic owns the DDL (migrations/)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    Uuid,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from core.vocabulary import DeliveryState, JobStatus

# JSONB on Postgres (indexable, compact), plain JSON text elsewhere (SQLite in embedded mode).
JsonType = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JsonType, list[Any]: JsonType}


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    tenant: Mapped[str] = mapped_column(String(100), index=True)
    role: Mapped[str] = mapped_column(String(20))
    prefix: Mapped[str] = mapped_column(String(32), unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("tenant", "idempotency_key", name="uq_jobs_tenant_idempotency_key"),
        Index("ix_jobs_tenant_created", "tenant", "created_at", "id"),
        Index("ix_jobs_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(100))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED.value)
    stage: Mapped[str] = mapped_column(String(32), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    input_key: Mapped[str] = mapped_column(String(200))
    # None for a source_url job until the worker has fetched its media (workers/fetch.py).
    sha256: Mapped[str | None] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    filename: Mapped[str | None] = mapped_column(String(255))
    content_type: Mapped[str | None] = mapped_column(String(100))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", default=dict)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    # Submitted by URL: the worker fetches it into input_key first (Stage.FETCHING).
    source_url: Mapped[str | None] = mapped_column(Text, default=None)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    # sha256 of what made the job (file content + form fields): a reused Idempotency-Key with another is refused.
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    # The batch (POST /v1/batches) the job is an item of; its completion is decided in db/batches.py.
    batch_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("batches.id"), index=True, default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    # Claims handed back because a dependency was down (workers/tasks.py): ``attempt`` stays a fencing token
    # that every claim bumps, and only ``attempt - outage_retries`` counts against VERITY_MAX_ATTEMPTS.
    outage_retries: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # When the job first met the outage it is waiting out (None: it is not waiting for one).
    outage_since: Mapped[datetime | None] = mapped_column(default=None)
    lease_expires_at: Mapped[datetime | None] = mapped_column(default=None)
    enqueued_at: Mapped[datetime | None] = mapped_column(default=None)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    model_pack: Mapped[str | None] = mapped_column(String(200))
    calibration_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)

    result: Mapped[Result | None] = relationship(back_populates="job", uselist=False, lazy="raise")


class Batch(Base):
    """Jobs submitted together (POST /v1/batches): one id to poll and one batch.completed webhook."""

    __tablename__ = "batches"
    __table_args__ = (UniqueConstraint("tenant", "idempotency_key", name="uq_batches_tenant_idempotency_key"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(100))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    item_count: Mapped[int] = mapped_column(Integer)
    webhook_url: Mapped[str | None] = mapped_column(Text)
    per_item_webhooks: Mapped[bool] = mapped_column(Boolean, default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_fingerprint: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Set, under a row lock, by the transaction that made the last item terminal: batch.completed is written once.
    completed_at: Mapped[datetime | None] = mapped_column(default=None)


class Result(Base):
    __tablename__ = "results"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    attempt: Mapped[int] = mapped_column(Integer)
    verdict: Mapped[str] = mapped_column(String(16))
    score: Mapped[float | None] = mapped_column(Float)
    raw_score: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(String(32))
    t_low: Mapped[float | None] = mapped_column(Float)
    t_high: Mapped[float | None] = mapped_column(Float)
    per_model: Mapped[dict[str, Any]] = mapped_column(default=dict)
    tracks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    overrides: Mapped[dict[str, Any]] = mapped_column(default=dict)
    faces_found: Mapped[int] = mapped_column(Integer, default=0)
    frames_sampled: Mapped[int] = mapped_column(Integer, default=0)
    timings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    video: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # member -> {crop, input_size, normalisation}: the inputs each detector saw (its format's convention).
    preprocessing: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # The forensic signals (values, reasons they could not be computed, scope checks): see core.results.
    signals: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    # Heatmap overlays stored in the object store for explain=true jobs: one entry per (member, frame).
    heatmaps: Mapped[list[Any]] = mapped_column(default=list, server_default="[]")
    model_pack: Mapped[str | None] = mapped_column(String(200))
    test_pack: Mapped[bool] = mapped_column(Boolean, default=False)
    calibration_version: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship(back_populates="result", lazy="raise")


class FrameScore(Base):
    __tablename__ = "frame_scores"
    __table_args__ = (Index("ix_frame_scores_job_model", "job_id", "model", "frame_index"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    frame_index: Mapped[int] = mapped_column(Integer)
    timestamp_s: Mapped[float] = mapped_column(Float)
    track_id: Mapped[int] = mapped_column(Integer)
    box: Mapped[dict[str, Any]] = mapped_column()
    face_prob: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(64))
    score: Mapped[float] = mapped_column(Float)


class Feedback(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        # One current label per (job, moderator); earlier ones stay as history.
        Index(
            "uq_feedback_current",
            "job_id",
            "api_key_id",
            unique=True,
            postgresql_where=text("is_current"),
            sqlite_where=text("is_current"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    tenant: Mapped[str] = mapped_column(String(100))
    label: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Calibration(Base):
    __tablename__ = "calibrations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(64), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="candidate")
    calibrators: Mapped[dict[str, Any]] = mapped_column(default=dict)
    feedback_weights: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fusion: Mapped[dict[str, Any]] = mapped_column(default=dict)
    thresholds: Mapped[dict[str, Any]] = mapped_column(default=dict)
    fitted_on: Mapped[dict[str, Any]] = mapped_column(default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(default=None)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # A job's events are sent once each; a stream sends stream.decision once per decision change (sequence).
        UniqueConstraint("job_id", "event", "sequence", name="uq_webhook_deliveries_job_event_sequence"),
        Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
    )

    # The id doubles as the Standard Webhooks `webhook-id`: stable across retries.
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(32))
    sequence: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column()
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16), default=DeliveryState.PENDING.value)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)

    @property
    def webhook_id(self) -> str:
        return f"msg_{self.id.hex}"


class WorkerHeartbeat(Base):
    """One row per Celery process that runs tasks, refreshed every few seconds (db/heartbeat.py); /readyz and
    /metrics read it, so worker health is visible from any API process without reaching the workers."""

    __tablename__ = "worker_heartbeats"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # "<celery node name>/<pid>"
    worker: Mapped[str] = mapped_column(String(200))
    pid: Mapped[int] = mapped_column(Integer)
    queues: Mapped[str] = mapped_column(String(200), default="")
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)


class Upload(Base):
    """A presigned upload (POST /v1/uploads): the client PUTs its video to ``object_key`` before ``expires_at``,
    then submits it once by id. The reaper removes an unused one, with its object, after it expires."""

    __tablename__ = "uploads"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(100))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    object_key: Mapped[str] = mapped_column(String(200), unique=True)
    max_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), default=None)


class StreamSession(Base):
    """A live stream (POST /v1/streams). Its id is its job's: the job is STREAMING while the session is open and
    gets the final decision as its result (status SUCCEEDED) when the session closes."""

    __tablename__ = "stream_sessions"
    __table_args__ = (Index("ix_stream_sessions_key_status", "api_key_id", "status"),)

    id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(100))
    api_key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id"))
    strategy: Mapped[dict[str, Any]] = mapped_column()
    updates: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    frames_scored: Mapped[int] = mapped_column(Integer, default=0)
    frames_with_face: Mapped[int] = mapped_column(Integer, default=0)
    # Received and dropped are counted in Redis as frames arrive; these are their values when the session closed.
    frames_received: Mapped[int] = mapped_column(Integer, default=0)
    frames_dropped: Mapped[int] = mapped_column(Integer, default=0)
    verdict: Mapped[str | None] = mapped_column(String(16), default=None)
    score: Mapped[float | None] = mapped_column(Float, default=None)
    t_low: Mapped[float | None] = mapped_column(Float, default=None)
    t_high: Mapped[float | None] = mapped_column(Float, default=None)
    decision_changes: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200), default=None)
    close_reason: Mapped[str | None] = mapped_column(String(32), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(default=None)


class StreamFrameRow(Base):
    """One scored frame of a stream, stored as it is scored: what a worker taking the session over replays, and
    the stream's decision timeline. Its faces' per-model scores are ``frame_scores`` rows of the stream's job."""

    __tablename__ = "stream_frames"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)  # the frame's number in the order it arrived
    t: Mapped[float] = mapped_column(Float)  # the client's timestamp, in seconds
    faces: Mapped[int] = mapped_column(Integer)
    # member -> P(fake) of the frame's most-fake face ({} without a face): the decider's input.
    scores: Mapped[dict[str, Any]] = mapped_column()
    score: Mapped[float | None] = mapped_column(Float)
    verdict: Mapped[str | None] = mapped_column(String(16))
    changed: Mapped[bool] = mapped_column(Boolean, default=False)
    scored_at: Mapped[datetime] = mapped_column(default=utcnow)
