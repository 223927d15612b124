"""Moderator feedback: one current label per (job, moderator), earlier ones kept as history."""

from __future__ import annotations

import uuid

from api.services.errors import Conflict
from api.services.jobs import tenant_job
from api.services.repository import Repository
from core.vocabulary import FeedbackCategory, JobStatus, Label
from db.apikeys import Principal
from db.models import Feedback


def post_feedback(
    repo: Repository,
    moderator: Principal,
    job_id: uuid.UUID,
    label: Label,
    category: FeedbackCategory,
    note: str | None,
) -> Feedback:
    """Label a SUCCEEDED job of the moderator's tenant, replacing the moderator's earlier label (kept as history).
    A job still running or that failed is a Conflict: there is no result to judge."""
    job = tenant_job(repo, moderator.tenant, job_id)
    if job.status != JobStatus.SUCCEEDED:
        raise Conflict("RESULT_NOT_READY", f"feedback needs a finished result; the job is {job.status}")
    repo.supersede_feedback(job.id, moderator.id)
    feedback = Feedback(
        job_id=job.id, api_key_id=moderator.id, tenant=moderator.tenant, label=label, category=category, note=note
    )
    repo.add_feedback(feedback)
    return feedback
