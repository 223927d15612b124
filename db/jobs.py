"""The worker's database side of a job: claim and take-over, heartbeat, and the webhook row of a final write.

Every write after the claim carries the attempt number it claimed with: a stale attempt (a redelivered
message, a worker that lost its lease) matches no row and changes nothing. The final writes (succeed, fail,
hand back) are in db/finish.py; the liveness lock in db/owner_lock.py; riding out outages in db/retry.py.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, update

from core import payloads
from core.vocabulary import JobStatus, Stage
from db import batches
from db.models import Feedback, Job, WebhookDelivery
from db.retry import with_retry
from db.session import session_scope

log = logging.getLogger(__name__)

MAX_ATTEMPTS_CODE = "MAX_ATTEMPTS_EXCEEDED"


def attempts_used(attempt: int, outage_retries: int) -> int:
    """The claims that count against VERITY_MAX_ATTEMPTS: all of them but those handed back for an outage."""
    return attempt - outage_retries


@dataclass(frozen=True)
class Claim:
    job_id: uuid.UUID
    tenant: str
    attempt: int
    input_key: str
    sha256: str | None  # None: a source_url job whose media is not fetched yet
    params: dict[str, Any]
    webhook_url: str | None
    outage_retries: int
    outage_since: datetime | None
    source_url: str | None = None
    batch_id: uuid.UUID | None = None  # a batch item: finishing it may complete the batch

    @property
    def attempts_used(self) -> int:
        return attempts_used(self.attempt, self.outage_retries)


@dataclass(frozen=True)
class Taken:
    """What ``take`` did: claimed (``claim`` set), or why not; ``delivery_id`` is a job.failed webhook to send."""

    claim: Claim | None
    reason: str  # claimed | owned | finished | missing | exhausted
    delivery_id: uuid.UUID | None = None
    batch_delivery_id: uuid.UUID | None = None  # the batch.completed this failure wrote, if it ended its batch


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value  # SQLite: naive UTC


def take(
    job_id: str,
    lease_s: int,
    *,
    max_attempts: int | None = None,
    owner_gone: bool = False,
    retry_s: float = 0.0,
) -> Taken:
    """Claim the job if it is queued, running under an expired lease, or running for a worker that is gone.

    ``owner_gone``: the caller holds the job's OwnerLock, so no live process does. ``max_attempts``: a job that
    has already used them all (its workers keep dying, e.g. killed for memory) is failed with
    MAX_ATTEMPTS_EXCEEDED instead of being tried forever.
    """
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        log.error("detect called with a malformed job id %r", job_id)
        return Taken(None, "missing")
    return with_retry(lambda: _take(jid, lease_s, max_attempts, owner_gone), retry_s, f"claim of {jid}")


def _take(jid: uuid.UUID, lease_s: int, max_attempts: int | None, owner_gone: bool) -> Taken:
    now = _now()
    with session_scope() as session:
        row = session.execute(
            select(Job.status, Job.attempt, Job.outage_retries, (Job.lease_expires_at >= now).label("live")).where(
                Job.id == jid
            )
        ).one_or_none()
        if row is None:
            return Taken(None, "missing")
        status, attempt, live = row.status, row.attempt, bool(row.live)
        used = attempts_used(attempt, row.outage_retries)
        if status not in (JobStatus.QUEUED.value, JobStatus.RUNNING.value):
            return Taken(None, "finished")
        if status == JobStatus.RUNNING.value and live and not owner_gone:
            return Taken(None, "owned")
        # Compare-and-set on (status, attempt): every claim bumps the attempt, so of two racing takers one wins.
        same = (Job.id == jid, Job.status == status, Job.attempt == attempt)
        if max_attempts is not None and used >= max_attempts:
            message = f"the job was attempted {used} times and its worker never finished it"
            values = {"status": JobStatus.FAILED.value, "stage": Stage.FAILED, "error_code": MAX_ATTEMPTS_CODE}
            done = session.execute(
                update(Job)
                .where(*same)
                .values(error_message=message, lease_expires_at=None, finished_at=now, updated_at=now, **values)
                .execution_options(synchronize_session=False)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return Taken(None, "owned")
            url = session.scalar(select(Job.webhook_url).where(Job.id == jid))
            delivery = add_webhook(session, jid, url, "job.failed", payloads.failed(jid, MAX_ATTEMPTS_CODE, message))
            completed = batches.settle(session, jid)
            log.warning("job %s failed: %s", jid, message)
            return Taken(None, "exhausted", delivery, completed)
        result = session.execute(
            update(Job)
            .where(*same)
            .values(
                status=JobStatus.RUNNING.value,
                attempt=Job.attempt + 1,
                lease_expires_at=now + timedelta(seconds=lease_s),
                stage=Stage.CLAIMED,
                progress=0.0,
                started_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return Taken(None, "owned")
        job = session.scalars(select(Job).where(Job.id == jid)).one()
        if status == JobStatus.RUNNING.value:
            log.warning(
                "job %s: attempt %d takes over from attempt %d (%s)",
                jid,
                job.attempt,
                attempt,
                "its worker is gone" if live else "its lease expired",
            )
        claim = Claim(
            job.id,
            job.tenant,
            job.attempt,
            job.input_key,
            job.sha256,
            dict(job.params or {}),
            job.webhook_url,
            job.outage_retries,
            _aware(job.outage_since),
            job.source_url,
            job.batch_id,
        )
        return Taken(claim, Stage.CLAIMED)


def claim(job_id: str, lease_s: int) -> Claim | None:
    """Take the job if it is queued, or running under an expired lease; None if someone else owns it."""
    return take(job_id, lease_s).claim


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


def heartbeat(c: Claim, stage: str | None, progress: float | None, lease_s: int) -> bool:
    """Record progress (None keeps it) and extend the lease; False if this attempt no longer owns the job."""
    now = _now()
    values: dict[str, Any] = {"lease_expires_at": now + timedelta(seconds=lease_s), "updated_at": now}
    if stage is not None:
        values["stage"] = stage
    if progress is not None:
        values["progress"] = progress
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def record_source(c: Claim, sha256: str, size: int, content_type: str) -> bool:
    """A source_url job's fetched media; False if this attempt no longer owns the job."""
    with session_scope() as session:
        result = session.execute(
            update(Job)
            .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
            .values(sha256=sha256, size_bytes=size, content_type=content_type, updated_at=_now())
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


def add_webhook(
    session: Any, job_id: uuid.UUID, url: str | None, event: str, payload: dict[str, Any], sequence: int = 0
) -> uuid.UUID | None:
    """``sequence``: which one of an event a job sends more than once (a stream's stream.decision) this is."""
    if not url:
        return None
    delivery = WebhookDelivery(job_id=job_id, event=event, url=url, payload=payload, sequence=sequence)
    session.add(delivery)
    session.flush()
    return delivery.id


def mark_enqueued(job_id: uuid.UUID | str) -> None:
    jid = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id)
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == jid, Job.status == JobStatus.QUEUED.value)
            .values(enqueued_at=_now())
            .execution_options(synchronize_session=False)
        )
