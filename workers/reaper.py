"""The stale-job reaper: nothing stays QUEUED or RUNNING forever.

- QUEUED and never enqueued (the broker was down at submission) -> enqueue now.
- QUEUED, enqueued longer ago than the visibility timeout (message lost) -> enqueue again; the claim is
  conditional, so a duplicate message is harmless.
- QUEUED while the broker's Redis came back empty (restarted without persistence) -> enqueue again now.
- RUNNING with an expired lease, or with a stale heartbeat and a free liveness lock (its worker is gone)
  -> back to QUEUED, or FAILED with MAX_ATTEMPTS_EXCEEDED (and a job.failed webhook) after max attempts.
- A presigned upload no job used before it expired -> its row and its object are deleted.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, func, or_, select, update

from core import payloads
from core.queue import broker_lost_messages, enqueue_detect, enqueue_webhook
from core.settings import Settings
from core.storage import StorageError, get_store
from core.vocabulary import JobStatus, Stage
from db import batches, jobs, owner_lock
from db.models import Job, Upload
from db.session import session_scope

log = logging.getLogger(__name__)

# Heartbeats missed before a RUNNING job with a free liveness lock counts as abandoned; a live worker
# re-takes a lock a database restart dropped at its next beat, well within this.
STALE_BEATS = 3


@dataclass
class ReapReport:
    enqueued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requeued: list[str] = field(default_factory=list)
    broker_reset: bool = False
    removed_uploads: list[str] = field(default_factory=list)


def _expire_leases(settings: Settings, now: datetime, report: ReapReport) -> list[str]:
    """Returns webhook delivery ids created for jobs that ran out of attempts."""
    deliveries: list[str] = []
    stale_beat = now - timedelta(seconds=STALE_BEATS * settings.heartbeat_interval_s)
    with session_scope() as session:
        stale = session.scalars(
            select(Job)
            .where(
                Job.status == JobStatus.RUNNING.value,
                or_(Job.lease_expires_at < now, Job.lease_expires_at.is_(None), Job.updated_at < stale_beat),
            )
            .with_for_update(skip_locked=True)
            .limit(200)
        ).all()
        trust_locks = _locks_trustworthy(session, settings)
        for job in stale:
            expired = job.lease_expires_at is None or job.lease_expires_at < now
            if not expired and (not trust_locks or owner_lock.owner_alive_sql(session, job.id)):
                continue  # a slow heartbeat, but its worker still holds the lock (or may not have re-taken it yet)
            used = jobs.attempts_used(job.attempt, job.outage_retries)
            if used >= settings.max_attempts:
                message = f"the job was attempted {used} times and its worker never finished it"
                job.status, job.stage = JobStatus.FAILED.value, Stage.FAILED
                job.error_code, job.error_message = jobs.MAX_ATTEMPTS_CODE, message
                job.lease_expires_at, job.finished_at = None, now
                report.failed.append(str(job.id))
                payload = payloads.failed(job.id, jobs.MAX_ATTEMPTS_CODE, message)
                delivery = jobs.add_webhook(session, job.id, job.webhook_url, "job.failed", payload)
                completed = batches.settle(session, job.id)
                deliveries += [str(d) for d in (delivery, completed) if d]
            else:
                log.warning(
                    "job %s attempt %d: %s; handing it back",
                    job.id,
                    job.attempt,
                    "lease expired" if expired else "its worker is gone",
                )
                job.status, job.stage, job.lease_expires_at = JobStatus.QUEUED.value, Stage.REQUEUED, None
                job.enqueued_at = None
                report.requeued.append(str(job.id))
    return deliveries


def _locks_trustworthy(session: Any, settings: Settings) -> bool:
    """A Postgres restart drops every liveness lock, live workers' included, and their heartbeats went stale
    while it was down; give them a few beats to reconnect and re-take their locks before reading a free lock
    as a dead worker."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    uptime = session.scalar(select(func.extract("epoch", func.now() - func.pg_postmaster_start_time())))
    return float(uptime) > STALE_BEATS * settings.heartbeat_interval_s


def _broker_reset() -> bool:
    try:
        return broker_lost_messages()
    except Exception as exc:  # broker down: nothing can be enqueued this round anyway
        log.warning("reaper cannot reach the broker: %s", exc)
        return False


def reap(settings: Settings) -> ReapReport:
    now = datetime.now(UTC)
    report = ReapReport()
    deliveries = _expire_leases(settings, now, report)
    _remove_expired_uploads(now, report)
    report.broker_reset = _broker_reset()
    if report.broker_reset:
        log.warning("the broker came back without its data: re-enqueueing every queued job")
    with session_scope() as session:
        conditions = [
            and_(Job.enqueued_at.is_(None), Job.updated_at < now - timedelta(seconds=settings.enqueue_grace_s)),
            and_(Job.enqueued_at.is_(None), Job.stage == Stage.REQUEUED),
            Job.enqueued_at < now - timedelta(seconds=settings.visibility_timeout_s),
        ]
        query = select(Job.id).where(Job.status == JobStatus.QUEUED.value)
        if not report.broker_reset:
            query = query.where(or_(*conditions))
        ids = session.scalars(query.order_by(Job.created_at)).all()
    for job_id in ids:
        try:
            enqueue_detect(str(job_id))
        except Exception as exc:
            log.warning("reaper could not enqueue %s: %s", job_id, exc)
            if report.broker_reset:  # the reset marker is spent: leave it for the never-enqueued rule
                _mark_not_enqueued(job_id)
            continue
        _mark_enqueued(job_id)
        report.enqueued.append(str(job_id))
    for delivery_id in deliveries:
        try:
            enqueue_webhook(delivery_id)
        except Exception as exc:  # the relay picks it up from Postgres later
            log.warning("could not enqueue webhook %s: %s", delivery_id, exc)
    if report.enqueued or report.failed:
        log.info("reaper: enqueued %s, failed %s", report.enqueued, report.failed)
    return report


def _remove_expired_uploads(now: datetime, report: ReapReport) -> None:
    """Presigned uploads no job used before they expired go, with their objects. The row first, and only while
    still unused: a job taking the upload at the same moment then finds it gone instead of losing its object."""
    with session_scope() as session:
        expired = session.execute(
            select(Upload.id, Upload.object_key).where(Upload.used_at.is_(None), Upload.expires_at < now).limit(200)
        ).all()
    for upload_id, key in expired:
        with session_scope() as session:
            gone = session.execute(delete(Upload).where(Upload.id == upload_id, Upload.used_at.is_(None)))
            if not gone.rowcount:  # type: ignore[attr-defined]
                continue
        try:
            get_store().delete(key)
        except StorageError as exc:
            log.warning("reaper could not delete the expired upload %s (%s): %s", upload_id, key, exc)
        report.removed_uploads.append(str(upload_id))


def _mark_enqueued(job_id: uuid.UUID) -> None:
    jobs.mark_enqueued(job_id)


def _mark_not_enqueued(job_id: uuid.UUID) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=None))
