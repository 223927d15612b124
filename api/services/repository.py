"""The rows the services read and write, behind a protocol: SQL in production, a dict in unit tests."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db import batches
from db.models import Batch, Feedback, Job, Result, Upload
from db.session import session_scope


class DuplicateJob(Exception):
    """A unit of work broke a uniqueness rule on commit: in practice, a concurrent request with the same
    Idempotency-Key committed its job first."""


class Repository(Protocol):
    def get_job(self, tenant: str, job_id: uuid.UUID) -> Job | None: ...
    def job_by_idempotency_key(self, tenant: str, key: str) -> Job | None: ...
    def add_job(self, job: Job) -> None: ...
    def mark_enqueued(self, job_id: uuid.UUID) -> None: ...
    def supersede_feedback(self, job_id: uuid.UUID, api_key_id: int) -> None:
        """Mark the moderator's current label for the job as history."""

    def add_feedback(self, feedback: Feedback) -> None:
        """Store the label; its id and created_at are set on return."""

    def use_upload(self, tenant: str, upload_id: uuid.UUID, job_id: uuid.UUID) -> bool:
        """Mark the tenant's unused presigned upload as the job's; False if another job already used it."""

    def settle_batch(self, job_id: uuid.UUID) -> None:
        """The job just became terminal: complete its batch if it was the last open item (db/batches.py)."""


# One transaction per call: commits when the block succeeds, raises DuplicateJob on a broken uniqueness rule.
UnitOfWork = Callable[[], AbstractContextManager[Repository]]


class SqlRepository:
    """The rows through one session; the caller owns its transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def get_job(self, tenant: str, job_id: uuid.UUID) -> Job | None:
        return self.session.scalar(select(Job).where(Job.id == job_id, Job.tenant == tenant))

    def job_by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        return self.session.scalar(select(Job).where(Job.tenant == tenant, Job.idempotency_key == key))

    def add_job(self, job: Job) -> None:
        self.session.add(job)

    def mark_enqueued(self, job_id: uuid.UUID) -> None:
        self.session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=datetime.now(UTC)))

    def supersede_feedback(self, job_id: uuid.UUID, api_key_id: int) -> None:
        self.session.execute(
            update(Feedback)
            .where(Feedback.job_id == job_id, Feedback.api_key_id == api_key_id, Feedback.is_current.is_(True))
            .values(is_current=False)
        )

    def add_feedback(self, feedback: Feedback) -> None:
        self.session.add(feedback)
        self.session.flush()

    def settle_batch(self, job_id: uuid.UUID) -> None:
        batches.settle(self.session, job_id)

    def use_upload(self, tenant: str, upload_id: uuid.UUID, job_id: uuid.UUID) -> bool:
        result = self.session.execute(
            update(Upload)
            .where(Upload.id == upload_id, Upload.tenant == tenant, Upload.used_at.is_(None))
            .values(used_at=datetime.now(UTC), job_id=job_id)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    def get_batch(self, tenant: str, batch_id: uuid.UUID) -> Batch | None:
        return self.session.scalar(select(Batch).where(Batch.id == batch_id, Batch.tenant == tenant))

    def batch_by_idempotency_key(self, tenant: str, key: str) -> Batch | None:
        return self.session.scalar(select(Batch).where(Batch.tenant == tenant, Batch.idempotency_key == key))

    def add_batch(self, batch: Batch, jobs: list[Job]) -> None:
        # One transaction: no item can finish (and count the batch complete) before every item exists.
        self.session.add(batch)
        self.session.flush()
        self.session.add_all(jobs)

    def batch_items(self, batch_id: uuid.UUID) -> list[tuple[Job, Result | None]]:
        rows = self.session.execute(
            select(Job, Result)
            .outerjoin(Result, Result.job_id == Job.id)
            .where(Job.batch_id == batch_id)
            .order_by(Job.created_at, Job.id)
        )
        return [(job, result) for job, result in rows]


@contextmanager
def sql_unit_of_work() -> Iterator[SqlRepository]:
    """A ``UnitOfWork`` over ``db.session.session_scope``."""
    try:
        with session_scope() as session:
            yield SqlRepository(session)
    except IntegrityError as exc:
        raise DuplicateJob(str(exc)) from exc
