"""JSON views of database rows, shared by every route."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from core.results import JobResult
from db.models import Feedback, Job, Result


def iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": str(job.id),
        "status": job.status,
        "stage": job.stage,
        "progress": round(job.progress, 4),
        "filename": job.filename,
        "content_type": job.content_type,
        "size_bytes": job.size_bytes,
        "sha256": job.sha256,
        "params": job.params,
        "metadata": job.metadata_,
        "webhook_url": job.webhook_url,
        "idempotency_key": job.idempotency_key,
        "attempt": job.attempt,
        "error": {"code": job.error_code, "message": job.error_message} if job.error_code else None,
        "model_pack": job.model_pack,
        "calibration_version": job.calibration_version,
        "created_at": iso(job.created_at),
        "updated_at": iso(job.updated_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
        "links": {"self": f"/v1/jobs/{job.id}", "result": f"/v1/jobs/{job.id}/result"},
    }


def result_view(result: Result) -> dict[str, Any]:
    return {"job_id": str(result.job_id), **JobResult.from_row(result).view(), "created_at": iso(result.created_at)}


def feedback_view(feedback: Feedback) -> dict[str, Any]:
    return {
        "id": feedback.id,
        "job_id": str(feedback.job_id),
        "moderator_key_id": feedback.api_key_id,
        "label": feedback.label,
        "category": feedback.category,
        "note": feedback.note,
        "current": feedback.is_current,
        "created_at": iso(feedback.created_at),
    }
