"""The stale-job reaper: nothing stays QUEUED or RUNNING forever.

- QUEUED and never enqueued (the broker was down at submission) -> enqueue now.
- QUEUED, enqueued longer ago than the visibility timeout (message lost) -> enqueue again; the claim is
  conditional, so a duplicate message is harmless.
- RUNNING with an expired lease (the worker died) -> back to QUEUED, or FAILED after max attempts.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import and_, or_, select, update

from db.models import Job, JobStatus, WebhookDelivery
from db.queue import enqueue_detect, enqueue_webhook
from db.session import session_scope
from db.settings import Settings
from workers import payloads

log = logging.getLogger(__name__)

ENQUEUE_GRACE_S = 30


@dataclass
class ReapReport:
    enqueued: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def _expire_leases(settings: Settings, now: datetime, report: ReapReport) -> list[str]:
    """Returns webhook delivery ids created for jobs that ran out of attempts."""
    deliveries: list[str] = []
    with session_scope() as session:
        stale = session.scalars(
            select(Job)
            .where(Job.status == JobStatus.RUNNING.value, Job.lease_expires_at < now)
            .with_for_update(skip_locked=True)
            .limit(200)
        ).all()
        for job in stale:
            if job.attempt >= settings.max_attempts:
                message = f"the job was attempted {job.attempt} times and its worker never finished it"
                job.status, job.stage = JobStatus.FAILED.value, "failed"
                job.error_code, job.error_message = "MAX_ATTEMPTS_EXCEEDED", message
                job.lease_expires_at, job.finished_at = None, now
                report.failed.append(str(job.id))
                if job.webhook_url:
                    delivery = WebhookDelivery(
                        job_id=job.id,
                        event="job.failed",
                        url=job.webhook_url,
                        payload=payloads.failed(job.id, "MAX_ATTEMPTS_EXCEEDED", message),
                    )
                    session.add(delivery)
                    session.flush()
                    deliveries.append(str(delivery.id))
            else:
                job.status, job.stage, job.lease_expires_at = JobStatus.QUEUED.value, "requeued", None
                job.enqueued_at = None
    return deliveries


def reap(settings: Settings) -> ReapReport:
    now = datetime.now(UTC)
    report = ReapReport()
    deliveries = _expire_leases(settings, now, report)
    with session_scope() as session:
        ids = session.scalars(
            select(Job.id).where(
                Job.status == JobStatus.QUEUED.value,
                or_(
                    and_(Job.enqueued_at.is_(None), Job.updated_at < now - timedelta(seconds=ENQUEUE_GRACE_S)),
                    and_(Job.enqueued_at.is_(None), Job.stage == "requeued"),
                    Job.enqueued_at < now - timedelta(seconds=settings.visibility_timeout_s),
                ),
            )
        ).all()
    for job_id in ids:
        try:
            enqueue_detect(str(job_id))
        except Exception as exc:
            log.warning("reaper could not enqueue %s: %s", job_id, exc)
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


def _mark_enqueued(job_id: uuid.UUID) -> None:
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=datetime.now(UTC)))
