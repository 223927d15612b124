"""The worker's database side of a job: claim, heartbeat, and the fenced final writes.

Every write after the claim carries the attempt number it claimed with: a stale attempt (a redelivered
message, a worker that lost its lease) matches no row and changes nothing.

Liveness: while a process works on a job it holds a Postgres advisory lock keyed by the job id on a
connection of its own (``OwnerLock``). Postgres drops the lock the moment that connection dies, so a RUNNING
job whose lock is free has lost its worker (SIGKILL, OOM kill, time-limit kill): a redelivered message or the
reaper takes it over at once instead of waiting out the lease. The lock is only a liveness hint; the attempt
fence is what keeps a wrongly presumed-dead worker from writing.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Connection, exists, func, select, update
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from core import payloads
from core.vocabulary import JobStatus, Stage
from db.models import Feedback, FrameScore, Job, Result, WebhookDelivery
from db.session import get_engine, session_scope

log = logging.getLogger(__name__)

T = TypeVar("T")

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
    sha256: str
    params: dict[str, Any]
    webhook_url: str | None
    outage_retries: int
    outage_since: datetime | None

    @property
    def attempts_used(self) -> int:
        return attempts_used(self.attempt, self.outage_retries)


@dataclass(frozen=True)
class Taken:
    """What ``take`` did: claimed (``claim`` set), or why not; ``delivery_id`` is a job.failed webhook to send."""

    claim: Claim | None
    reason: str  # claimed | owned | finished | missing | exhausted
    delivery_id: uuid.UUID | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value  # SQLite: naive UTC


def is_transient(exc: BaseException) -> bool:
    """A database error worth retrying: the server restarted, failed over or dropped the connection."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def with_retry(fn: Callable[[], T], retry_s: float, what: str) -> T:
    """Run ``fn``, retrying transient database errors with backoff for up to ``retry_s`` seconds.

    Every caller here is safe to repeat: claims and final writes are conditional UPDATEs, so a commit that
    succeeded but whose reply was lost cannot be applied twice.
    """
    deadline = time.monotonic() + retry_s
    delay = 0.5
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable during %s, retrying in %.1fs: %s", what, delay, str(exc)[:200])
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def lock_key(job_id: uuid.UUID) -> int:
    """A signed 64-bit advisory-lock key from the job's UUID (random bits, so collisions are negligible)."""
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


class OwnerLock:
    """The advisory lock that marks a job's worker as alive; a no-op outside Postgres (embedded mode)."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.key = lock_key(job_id)
        self._conn: Connection | None = None
        self.enabled = get_engine().dialect.name == "postgresql"

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self) -> bool:
        """True if this process holds the lock now (re-entrant); False if another live session holds it."""
        if not self.enabled:
            return False
        try:
            if self._conn is None:
                # Autocommit: the lock outlives statements without an idle-in-transaction session for hours.
                self._conn = get_engine().connect().execution_options(isolation_level="AUTOCOMMIT")
            got = bool(self._conn.scalar(select(func.pg_try_advisory_lock(self.key))))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not take the liveness lock: %s", str(exc)[:200])
            self._drop()
            return False
        if not got:
            self._drop()
        return got

    def release(self) -> None:
        # Unlock first: the server drops a closed session's locks only once its backend has noticed the
        # disconnect, so another taker right after could still find the lock held. Closing the connection for
        # good (not back to the pool) then drops whatever is left.
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: the server drops the lock with it
                self._conn.scalar(select(func.pg_advisory_unlock_all()))
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # already broken: the server dropped the lock with it
                pass
            self._conn = None


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
            log.warning("job %s failed: %s", jid, message)
            return Taken(None, "exhausted", delivery)
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


def _finish_job(session: Any, c: Claim, values: dict[str, Any]) -> bool:
    now = _now()
    result = session.execute(
        update(Job)
        .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
        .values(lease_expires_at=None, finished_at=now, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


def add_webhook(
    session: Any, job_id: uuid.UUID, url: str | None, event: str, payload: dict[str, Any]
) -> uuid.UUID | None:
    if not url:
        return None
    delivery = WebhookDelivery(job_id=job_id, event=event, url=url, payload=payload)
    session.add(delivery)
    session.flush()
    return delivery.id


def _already_finished_by(c: Claim, status: JobStatus) -> tuple[bool, uuid.UUID | None]:
    """Did this very attempt already commit its final write? (A retry whose earlier try lost its reply.)"""
    event = "job.succeeded" if status == JobStatus.SUCCEEDED else "job.failed"
    with session_scope() as session:
        mine = session.scalar(
            select(exists().where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == status.value))
        )
        if not mine:
            return False, None
        delivery = session.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.job_id == c.job_id, WebhookDelivery.event == event)
        )
        return True, delivery


def _finish(
    c: Claim,
    status: JobStatus,
    values: dict[str, Any],
    event: str,
    webhook_payload: dict[str, Any],
    retry_s: float,
    what: str,
    add_rows: Callable[[Any], None] | None = None,
) -> uuid.UUID | bool | None:
    """One fenced transaction: the job's final state (+ ``add_rows``) + its webhook row, retried through
    database outages. Returns the webhook delivery id (None without a webhook), or False if this attempt was
    fenced off."""
    tries = 0

    def attempt() -> uuid.UUID | bool | None:
        nonlocal tries
        tries += 1
        with session_scope() as session:
            if not _finish_job(session, c, {"status": status.value, **values}):
                session.rollback()
                if tries > 1:  # an earlier try may have committed before its reply was lost
                    done, delivery = _already_finished_by(c, status)
                    if done:
                        return delivery
                log.warning("job %s attempt %s lost its claim; not marking it %s", c.job_id, c.attempt, status.value)
                return False
            if add_rows is not None:
                add_rows(session)
            return add_webhook(session, c.job_id, c.webhook_url, event, webhook_payload)

    return with_retry(attempt, retry_s, f"{what} {c.job_id}")


def complete(
    c: Claim,
    result: dict[str, Any],
    frame_rows: list[dict[str, Any]],
    webhook_payload: dict[str, Any],
    retry_s: float = 0.0,
) -> uuid.UUID | bool | None:
    """One transaction: result + frame scores + job SUCCEEDED + webhook row.

    Returns the webhook delivery id (None without a webhook), or False if this attempt was fenced off.
    """

    def add_rows(session: Any) -> None:
        session.add(Result(job_id=c.job_id, attempt=c.attempt, **result))
        if frame_rows:
            session.execute(FrameScore.__table__.insert(), [{"job_id": c.job_id, **row} for row in frame_rows])

    values = {
        "stage": Stage.DONE,
        "progress": 1.0,
        "model_pack": result.get("model_pack"),
        "calibration_version": result.get("calibration_version"),
    }
    return _finish(
        c, JobStatus.SUCCEEDED, values, "job.succeeded", webhook_payload, retry_s, "saving the result of", add_rows
    )


def fail(
    c: Claim, code: str, message: str, webhook_payload: dict[str, Any], retry_s: float = 0.0
) -> uuid.UUID | bool | None:
    values = {"stage": Stage.FAILED, "error_code": code, "error_message": message[:2000]}
    return _finish(c, JobStatus.FAILED, values, "job.failed", webhook_payload, retry_s, "failing")


def _hand_back(c: Claim, values: dict[str, Any], retry_s: float, what: str) -> bool:
    """Back to QUEUED (fenced); the caller re-enqueues it. ``enqueued_at`` is cleared, so if the caller cannot
    reach the broker the reaper sends it after the grace."""

    def attempt() -> bool:
        with session_scope() as session:
            result = session.execute(
                update(Job)
                .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
                .values(
                    status=JobStatus.QUEUED.value,
                    lease_expires_at=None,
                    enqueued_at=None,
                    updated_at=_now(),
                    **values,
                )
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    return with_retry(attempt, retry_s, f"{what} {c.job_id}")


def release(c: Claim, reason: str, retry_s: float = 0.0) -> bool:
    """Hand a job back after a failure of its own (a crash): this attempt counts against its attempts."""
    return _hand_back(c, {"stage": Stage.RETRYING, "error_message": reason[:2000]}, retry_s, "releasing")


def park(c: Claim, stage: str, reason: str, retry_s: float = 0.0) -> bool:
    """Hand a job back because a dependency is down: this claim does not count against its attempts, and
    ``outage_since`` keeps the moment the job first met the outage, which the retry budget runs from."""
    values = {
        "stage": stage,
        "error_message": reason[:2000],
        "outage_retries": Job.outage_retries + 1,
        "outage_since": func.coalesce(Job.outage_since, _now()),
    }
    return _hand_back(c, values, retry_s, "handing back")


def outage_over(c: Claim, retry_s: float = 0.0) -> None:
    """The job got past the dependency it was waiting for: a later outage gets a whole budget again."""

    def attempt() -> None:
        with session_scope() as session:
            session.execute(
                update(Job)
                .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
                .values(outage_since=None)
                .execution_options(synchronize_session=False)
            )

    with_retry(attempt, retry_s, f"recording the end of the outage of {c.job_id}")


def mark_enqueued(job_id: uuid.UUID | str) -> None:
    jid = job_id if isinstance(job_id, uuid.UUID) else uuid.UUID(job_id)
    with session_scope() as session:
        session.execute(
            update(Job)
            .where(Job.id == jid, Job.status == JobStatus.QUEUED.value)
            .values(enqueued_at=_now())
            .execution_options(synchronize_session=False)
        )


def owner_alive_sql(session: Any, job_id: uuid.UUID) -> bool:
    """For the reaper: is some live session holding the job's OwnerLock? (A transaction-scoped probe.)"""
    if session.get_bind().dialect.name != "postgresql":
        return True  # no liveness signal: only the lease decides
    free = session.scalar(select(func.pg_try_advisory_xact_lock(lock_key(job_id))))
    return not free
