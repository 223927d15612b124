"""Moderator feedback: one current label per (job, moderator), earlier ones kept as history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select, update

from api.auth import current_key, require_role
from api.errors import ApiError
from api.jobs import _tenant_job
from api.serialize import feedback_view
from db.models import Feedback, JobStatus, Role
from db.session import session_scope

bp = Blueprint("feedback", __name__)

LABELS = ("REAL", "FAKE", "UNKNOWN")
CATEGORIES = ("FALSE_POSITIVE", "FALSE_NEGATIVE", "CONFIRMATION", "OTHER")


def _body() -> dict[str, Any]:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_JSON", "send a JSON object body")
    return body


@bp.post("/v1/jobs/<job_id>/feedback")
@require_role(Role.MODERATOR)
def post_feedback(job_id: str) -> Response:
    body = _body()
    label = body.get("label")
    category = body.get("category", "OTHER")
    note = body.get("note")
    if label not in LABELS:
        raise ApiError(400, "INVALID_PARAMETER", f"label must be one of {', '.join(LABELS)}")
    if category not in CATEGORIES:
        raise ApiError(400, "INVALID_PARAMETER", f"category must be one of {', '.join(CATEGORIES)}")
    if note is not None and (not isinstance(note, str) or len(note) > 4000):
        raise ApiError(400, "INVALID_PARAMETER", "note must be a string of at most 4000 characters")
    key = current_key()
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        if job.status != JobStatus.SUCCEEDED:
            raise ApiError(409, "RESULT_NOT_READY", f"feedback needs a finished result; the job is {job.status}")
        session.execute(
            update(Feedback)
            .where(Feedback.job_id == job.id, Feedback.api_key_id == key.id, Feedback.is_current.is_(True))
            .values(is_current=False)
        )
        feedback = Feedback(
            job_id=job.id, api_key_id=key.id, tenant=key.tenant, label=label, category=category, note=note
        )
        session.add(feedback)
        session.flush()
        response = jsonify(feedback_view(feedback))
    response.status_code = 201
    return response


@bp.get("/v1/feedback")
@require_role(Role.MODERATOR)
def export_feedback() -> Response:
    query = select(Feedback).where(Feedback.tenant == current_key().tenant)
    if request.args.get("all") not in ("1", "true"):
        query = query.where(Feedback.is_current.is_(True))
    if label := request.args.get("label"):
        query = query.where(Feedback.label == label)
    for arg, op in (("since", Feedback.created_at.__ge__), ("until", Feedback.created_at.__lt__)):
        if raw := request.args.get(arg):
            try:
                query = query.where(op(datetime.fromisoformat(raw)))
            except ValueError as exc:
                raise ApiError(400, "INVALID_PARAMETER", f"{arg} must be an ISO-8601 time") from exc
    with session_scope() as session:
        rows = list(session.scalars(query.order_by(Feedback.created_at, Feedback.id).limit(10_000)))
        return jsonify({"feedback": [feedback_view(f) for f in rows]})
