"""The worker's database side of a job: claim, heartbeat, and the fenced final writes.

Every write after the claim carries the attempt number it claimed with: a stale attempt (a redelivered
message, a worker that lost its lease) matches no row and changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import or_, select, update

from db.models import Feedback, FrameScore, Job, JobStatus, Result, WebhookDelivery
from db.session import session_scope

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    tenant: str
    attempt: int
    input_key: str
    sha256: str
    params: dict[str, Any]
    webhook_url: str | None


def _now() -> datetime:
    return datetime.now(UTC)


def claim(job_id: str, lease_s: int) -> Claim | None:
    """Take the job if it is queued, or running under an expired lease; None if someone else owns it."""
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        log.error("detect called with a malformed job id %r", job_id)
        return None
    now = _now()
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(
                Job.id == jid,
                or_(
                    Job.status == JobStatus.QUEUED.value,
                    (Job.status == JobStatus.RUNNING.value) & (Job.lease_expires_at < now),
                ),
            )
            .values(
                status=JobStatus.RUNNING.value,
                attempt=Job.attempt + 1,
                lease_expires_at=now + timedelta(seconds=lease_s),
                stage="claimed",
                progress=0.0,
                started_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        job = session.scalars(select(Job).where(Job.id == jid)).one()
        return Claim(
            job.id, job.tenant, job.attempt, job.input_key, job.sha256, dict(job.params or {}), job.webhook_url
        )


def known_label(c: Claim) -> str | None:
    """A moderator's current REAL/FAKE label on identical content (same sha256) of the same tenant.

    Several moderators: the majority; a tie gives no label rather than a guess.
    """
    with session_scope() as session:
        labels = session.scalars(
            select(Feedback.label)
            .join(Job, Job.id == Feedback.job_id)
            .where(
                Job.tenant == c.tenant,
                Job.sha256 == c.sha256,
                Job.id != c.job_id,
                Feedback.is_current.is_(True),
                Feedback.label.in_(("REAL", "FAKE")),
            )
        ).all()
    fake, real = labels.count("FAKE"), labels.count("REAL")
    if fake == real:
        return None
    return "FAKE" if fake > real else "REAL"


def heartbeat(c: Claim, stage: str, progress: float, lease_s: int) -> bool:
    """Record progress and extend the lease; False if this attempt no longer owns the job."""
    now = _now()
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
            .values(
                stage=stage,
                progress=progress,
                lease_expires_at=now + timedelta(seconds=lease_s),
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def _finish_job(session: Any, c: Claim, values: dict[str, Any]) -> bool:
    now = _now()
    result = session.execute(
        update(Job)
        .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
        .values(lease_expires_at=None, finished_at=now, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def _add_webhook(session: Any, c: Claim, event: str, payload: dict[str, Any]) -> uuid.UUID | None:
    if not c.webhook_url:
        return None
    delivery = WebhookDelivery(job_id=c.job_id, event=event, url=c.webhook_url, payload=payload)
    session.add(delivery)
    session.flush()
    return delivery.id


def complete(
    c: Claim,
    result: dict[str, Any],
    frame_rows: list[dict[str, Any]],
    webhook_payload: dict[str, Any],
) -> uuid.UUID | bool | None:
    """One transaction: result + frame scores + job SUCCEEDED + webhook row.

    Returns the webhook delivery id (None without a webhook), or False if this attempt was fenced off.
    """
    with session_scope() as session:
        if not _finish_job(
            session,
            c,
            {
                "status": JobStatus.SUCCEEDED.value,
                "stage": "done",
                "progress": 1.0,
                "model_pack": result.get("model_pack"),
                "calibration_version": result.get("calibration_version"),
            },
        ):
            log.warning("job %s attempt %s lost its claim; discarding its result", c.job_id, c.attempt)
            session.rollback()
            return False
        session.add(Result(job_id=c.job_id, attempt=c.attempt, **result))
        if frame_rows:
            session.execute(FrameScore.__table__.insert(), [{"job_id": c.job_id, **row} for row in frame_rows])
        return _add_webhook(session, c, "job.succeeded", webhook_payload)


def fail(c: Claim, code: str, message: str, webhook_payload: dict[str, Any]) -> uuid.UUID | bool | None:
    with session_scope() as session:
        if not _finish_job(
            session,
            c,
            {"status": JobStatus.FAILED.value, "stage": "failed", "error_code": code, "error_message": message[:2000]},
        ):
            session.rollback()
            return False
        return _add_webhook(session, c, "job.failed", webhook_payload)


def release(c: Claim, reason: str) -> bool:
    """Hand a job back to the queue after a transient failure (the caller re-enqueues it)."""
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
            .values(
                status=JobStatus.QUEUED.value,
                stage="retrying",
                lease_expires_at=None,
                error_message=reason[:2000],
                updated_at=_now(),
            )
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
