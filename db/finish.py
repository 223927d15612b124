"""A job's final writes, each one fenced transaction retried through database outages: the result and its
frame scores with SUCCEEDED (``complete``), FAILED (``fail``), or back to QUEUED (``release``, ``park``).

A write carries the attempt it claimed with (db/jobs.py): a stale attempt matches no row and changes nothing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import exists, func, insert, select, update

from core.results import FrameRow, JobResult
from core.vocabulary import JobStatus, Stage
from db import batches
from db.jobs import Claim, add_webhook
from db.models import FrameScore, Job, Result, WebhookDelivery, utcnow
from db.retry import with_retry
from db.session import session_scope

log = logging.getLogger(__name__)


def _finish_job(session: Any, c: Claim, values: dict[str, Any]) -> bool:
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == c.job_id, Job.attempt == c.attempt, Job.status == JobStatus.RUNNING.value)
        .values(lease_expires_at=None, finished_at=now, updated_at=now, **values)
        .execution_options(synchronize_session=False)
    )
    return bool(result.rowcount)


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
            delivery = add_webhook(session, c.job_id, c.webhook_url, event, webhook_payload)
            if c.batch_id is not None:  # the worker sends its batch.completed, if any (workers/tasks.py)
                batches.settle(session, c.job_id)
            return delivery

    return with_retry(attempt, retry_s, f"{what} {c.job_id}")


def complete(
    c: Claim,
    result: JobResult,
    frame_rows: list[FrameRow],
    webhook_payload: dict[str, Any],
    retry_s: float = 0.0,
) -> uuid.UUID | bool | None:
    """One transaction: result + frame scores + job SUCCEEDED + webhook row.

    Returns the webhook delivery id (None without a webhook), or False if this attempt was fenced off.
    """

    def add_rows(session: Any) -> None:
        session.add(Result(job_id=c.job_id, attempt=c.attempt, **result.columns()))
        if frame_rows:
            session.execute(insert(FrameScore), [{"job_id": c.job_id, **row.columns()} for row in frame_rows])

    values = {
        "stage": Stage.DONE,
        "progress": 1.0,
        "model_pack": result.model_pack,
        "calibration_version": result.calibration_version,
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
                    updated_at=utcnow(),
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
        "outage_since": func.coalesce(Job.outage_since, utcnow()),
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
