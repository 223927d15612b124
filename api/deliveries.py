"""Webhook tooling for submitters: list a job's deliveries and redeliver one (same ``webhook-id``)."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, jsonify
from sqlalchemy import select, update

from api.auth import require_role
from api.errors import ApiError
from api.jobs import _tenant_job
from api.openapi import responses, spec
from api.schemas import DeliveryList, DeliveryView
from api.serialize import iso
from core.queue import enqueue_webhook
from core.vocabulary import DeliveryState, Role
from db.models import WebhookDelivery
from db.session import session_scope

log = logging.getLogger(__name__)
bp = Blueprint("deliveries", __name__, url_prefix="/v1/jobs")

REDELIVERABLE = (DeliveryState.DELIVERED.value, DeliveryState.FAILED.value, DeliveryState.DISABLED.value)


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": str(delivery.id),
        "webhook_id": delivery.webhook_id,
        "job_id": str(delivery.job_id),
        "event": delivery.event,
        "url": delivery.url,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        # Only meaningful while pending; afterwards it is the time a retry would have been due.
        "next_attempt_at": iso(delivery.next_attempt_at),
        "created_at": iso(delivery.created_at),
        "delivered_at": iso(delivery.delivered_at),
        "payload": delivery.payload,
    }


def _parse_delivery_id(raw: str) -> uuid.UUID:
    """Accept the row id or the ``msg_<hex>`` webhook-id a receiver saw in its headers."""
    try:
        return uuid.UUID(raw.removeprefix("msg_"))
    except ValueError as exc:
        raise ApiError(404, "NOT_FOUND", "no such delivery") from exc


@bp.get("/<job_id>/webhooks")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: DeliveryList}, 404), tags=["webhooks"])
def list_deliveries(job_id: str) -> Response:
    """The job's webhook deliveries with their state, attempts and last status. Role: submitter."""
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        rows = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job.id)
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        )
        return jsonify({"deliveries": [delivery_view(d) for d in rows]})


@bp.post("/<job_id>/webhooks/<delivery_id>/redeliver")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({202: DeliveryView}, 404, 409), tags=["webhooks"])
def redeliver(job_id: str, delivery_id: str) -> Response:
    """Send a finished delivery again with the same webhook-id (409 while it is still pending). Role: submitter."""
    target = _parse_delivery_id(delivery_id)
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        # Conditional on the state, so two redeliver calls (or one racing the sender) reset it only once.
        # attempts restarts at 0: a redelivery gets the full retry schedule, not the exhausted one.
        reset = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == target,
                WebhookDelivery.job_id == job.id,
                WebhookDelivery.state.in_(REDELIVERABLE),
            )
            .values(
                state=DeliveryState.PENDING.value,
                attempts=0,
                next_attempt_at=datetime.now(UTC),
                delivered_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        delivery = session.scalar(
            select(WebhookDelivery).where(WebhookDelivery.id == target, WebhookDelivery.job_id == job.id)
        )
        if delivery is None:
            raise ApiError(404, "NOT_FOUND", "no such delivery for this job")
        if not reset.rowcount:  # type: ignore[attr-defined]
            raise ApiError(409, "DELIVERY_PENDING", "the delivery is already pending; it will be sent when due")
        view = delivery_view(delivery)
    try:
        enqueue_webhook(view["id"])
    except Exception as exc:  # the row is due now, so the relay task sends it on its next pass
        log.warning("could not enqueue redelivery %s, the relay will send it: %s", view["id"], exc)
    response = jsonify(view)
    response.status_code = 202
    return response
