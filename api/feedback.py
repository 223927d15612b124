"""Moderator feedback: one current label per (job, moderator), earlier ones kept as history."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request
from sqlalchemy import select

from api.auth import current_key, require_role
from api.errors import ApiError, service_errors
from api.jobs import _parse_job_id
from api.openapi import responses, spec
from api.schemas import FeedbackIn, FeedbackList, FeedbackQuery, FeedbackView
from api.serialize import feedback_view
from api.services import feedback as service
from api.services.repository import SqlRepository
from core.vocabulary import Role
from db.models import Feedback
from db.session import session_scope

bp = Blueprint("feedback", __name__)


@bp.post("/v1/jobs/<job_id>/feedback")
@require_role(Role.MODERATOR)
@spec.validate(json=FeedbackIn, resp=responses({201: FeedbackView}, 403, 404, 409, 413, 415), tags=["feedback"])
def post_feedback(job_id: str) -> Response:
    """Label a finished job REAL / FAKE / UNKNOWN; replaces this moderator's earlier label (kept as history).
    Role: moderator."""
    body: FeedbackIn | None = request.context.json  # type: ignore[attr-defined]
    if body is None:  # not a JSON body at all
        raise ApiError(400, "INVALID_JSON", "send a JSON object body")
    jid = _parse_job_id(job_id)
    with service_errors(), session_scope() as session:
        feedback = service.post_feedback(
            SqlRepository(session), current_key(), jid, body.label, body.category, body.note
        )
        response = jsonify(feedback_view(feedback))
    response.status_code = 201
    return response


@bp.get("/v1/feedback")
@require_role(Role.MODERATOR)
@spec.validate(query=FeedbackQuery, resp=responses({200: FeedbackList}, 403), tags=["feedback"])
def export_feedback() -> Response:
    """Export the tenant's labels (current ones unless all=1), oldest first, at most 10,000. Role: moderator."""
    args: FeedbackQuery = request.context.query  # type: ignore[attr-defined]
    query = select(Feedback).where(Feedback.tenant == current_key().tenant)
    if args.all not in ("1", "true"):
        query = query.where(Feedback.is_current.is_(True))
    if args.label:
        query = query.where(Feedback.label == args.label)
    if args.since:
        query = query.where(Feedback.created_at >= args.since)
    if args.until:
        query = query.where(Feedback.created_at < args.until)
    with session_scope() as session:
        rows = list(session.scalars(query.order_by(Feedback.created_at, Feedback.id).limit(10_000)))
        return jsonify({"feedback": [feedback_view(f) for f in rows]})
