"""A batch's completion, decided inside the transaction that makes one of its items terminal.

Every path that ends a job (db/finish.py, the max-attempts claim in db/jobs.py, the reaper, the API's cancel) calls
``settle`` in its own transaction, after the job's final write. The batch row is locked first (FOR UPDATE) and the
items are counted after it, each statement with a fresh READ COMMITTED snapshot: of two transactions finishing the
last two items at once, the second waits for the first's commit and then sees both items terminal, and
``completed_at`` (set under the lock) keeps a third call from writing the event again. So ``batch.completed`` is
written exactly once, through the outbox: a webhook_deliveries row of the same transaction.
"""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import payloads
from core.batches import summarize
from db import jobs
from db.models import Batch, Job, WebhookDelivery, utcnow
from db.session import session_scope

COMPLETED_EVENT = "batch.completed"


def item_counts(session: Session, batch_id: uuid.UUID) -> dict[str, int]:
    """The batch's items per job status."""
    rows = session.execute(select(Job.status, func.count()).where(Job.batch_id == batch_id).group_by(Job.status))
    return {status: count for status, count in rows}


def settle(session: Session, job_id: uuid.UUID) -> uuid.UUID | None:
    """Mark the job's batch completed if the job was its last open item, with its batch.completed webhook row
    (attached to this job: the delivery table keys deliveries by job). Returns that delivery's id, or None (not
    a batch item, items still open, already completed, or no batch webhook)."""
    session.flush()  # the caller's ORM changes to the job, before the items are counted
    batch_id = session.scalar(select(Job.batch_id).where(Job.id == job_id))
    if batch_id is None:
        return None
    batch = session.scalars(
        select(Batch).where(Batch.id == batch_id).with_for_update().execution_options(populate_existing=True)
    ).one()
    if batch.completed_at is not None:
        return None
    summary = summarize(item_counts(session, batch_id), batch.item_count)
    if not summary.done:
        return None
    batch.completed_at = utcnow()
    payload = payloads.batch_completed(batch.id, summary.counts, summary.total)
    return jobs.add_webhook(session, job_id, batch.webhook_url, COMPLETED_EVENT, payload)


def completion_delivery(job_id: uuid.UUID) -> uuid.UUID | None:
    """The batch.completed delivery that the final write of this job made, if it completed its batch."""
    with session_scope() as session:
        return session.scalar(
            select(WebhookDelivery.id).where(WebhookDelivery.job_id == job_id, WebhookDelivery.event == COMPLETED_EVENT)
        )
