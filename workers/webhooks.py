"""Webhook delivery per the Standard Webhooks spec, with retries scheduled from Postgres.

``webhook-id`` is the delivery row's id (stable across retries); ``webhook-timestamp`` is the send time
of each attempt; ``webhook-signature`` is ``v1,<base64 HMAC-SHA256(secret, id.timestamp.body)>``.
Only 2xx is success; redirects are not followed; 410 Gone disables the delivery.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from sqlalchemy import select, update

from core.netguard import UnsafeUrlError, VettedTarget, pinned_session, vet_url
from core.settings import Settings
from core.vocabulary import DeliveryState
from db.models import Job, WebhookDelivery
from db.session import session_scope

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 24 * 3600


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


@dataclass(frozen=True)
class SendOutcome:
    status: int | None
    error: str | None
    retry_after_s: float | None


def _retry_after(response: requests.Response) -> float | None:
    raw = response.headers.get("Retry-After")
    if not raw:
        return None
    try:
        return min(max(float(raw), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        return min(max((when - datetime.now(UTC)).total_seconds(), 0.0), MAX_RETRY_AFTER_S)


def post_pinned(target: VettedTarget, body: bytes, headers: dict[str, str], timeout_s: float) -> SendOutcome:
    session, pinned = pinned_session(target)
    with session:
        try:
            response = session.post(
                pinned.url,
                data=body,
                headers={**headers, "Host": pinned.host_header},
                timeout=timeout_s,
                allow_redirects=False,
            )
        except requests.RequestException as exc:
            return SendOutcome(None, f"{type(exc).__name__}: {exc}"[:500], None)
    return SendOutcome(response.status_code, None, _retry_after(response))


def backoff_s(settings: Settings, attempts: int) -> float:
    """Delay before the next try after ``attempts`` failures, with ±20% jitter so retries don't herd."""
    schedule = settings.webhook_backoff_s
    base = schedule[min(attempts - 1, len(schedule) - 1)]
    return base * random.uniform(0.8, 1.2)


def _claim(delivery_id: uuid.UUID, settings: Settings) -> WebhookDelivery | None:
    """Take a due delivery for one send; pushing next_attempt_at ahead keeps a parallel sender off it."""
    now = datetime.now(UTC)
    with session_scope() as session:
        result = session.execute(
            update(WebhookDelivery)
            .where(
                WebhookDelivery.id == delivery_id,
                WebhookDelivery.state == DeliveryState.PENDING.value,
                WebhookDelivery.next_attempt_at <= now,
            )
            .values(
                attempts=WebhookDelivery.attempts + 1,
                next_attempt_at=now + timedelta(seconds=settings.webhook_timeout_s + 60),
            )
            .execution_options(synchronize_session=False)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return session.scalars(select(WebhookDelivery).where(WebhookDelivery.id == delivery_id)).one()


def deliver(delivery_id: str, settings: Settings) -> str | None:
    """Make one attempt at a due delivery; returns the resulting state, or None if it was not due."""
    delivery = _claim(uuid.UUID(delivery_id), settings)
    if delivery is None:
        return None
    body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "Verity-Webhooks/1",
        "webhook-id": delivery.webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(settings.webhook_secret, delivery.webhook_id, timestamp, body),
    }
    try:
        target = vet_url(delivery.url, allow_private=settings.webhook_allow_private)
    except UnsafeUrlError as exc:
        outcome = SendOutcome(None, f"refused: {exc}", None)
        state = DeliveryState.FAILED
    else:
        outcome = post_pinned(target, body, headers, settings.webhook_timeout_s)
        if outcome.status is not None and 200 <= outcome.status < 300:
            state = DeliveryState.DELIVERED
        elif outcome.status == 410:
            state = DeliveryState.DISABLED
        elif delivery.attempts >= settings.webhook_max_attempts:
            state = DeliveryState.FAILED
        else:
            state = DeliveryState.PENDING
    now = datetime.now(UTC)
    delay = outcome.retry_after_s if outcome.retry_after_s is not None else backoff_s(settings, delivery.attempts)
    error = outcome.error or (None if state == DeliveryState.DELIVERED else f"HTTP {outcome.status}")
    with session_scope() as session:
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery.id)
            .values(
                state=state.value,
                last_status=outcome.status,
                last_error=error,
                next_attempt_at=now + timedelta(seconds=delay),
                delivered_at=now if state == DeliveryState.DELIVERED else None,
            )
        )
        if state == DeliveryState.DISABLED:
            _disable_endpoint(session, delivery)
    log.info("webhook %s attempt %d -> %s (%s)", delivery.webhook_id, delivery.attempts, state.value, error or "ok")
    return state.value


def _disable_endpoint(session: Any, gone: WebhookDelivery) -> None:
    """410 Gone retires the endpoint: the tenant's other pending deliveries to that URL are not sent either."""
    tenant = select(Job.tenant).where(Job.id == gone.job_id).scalar_subquery()
    session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.url == gone.url,
            WebhookDelivery.state == DeliveryState.PENDING.value,
            WebhookDelivery.job_id.in_(select(Job.id).where(Job.tenant == tenant)),
        )
        .values(state=DeliveryState.DISABLED.value, last_error=f"endpoint answered 410 Gone to {gone.webhook_id}")
        .execution_options(synchronize_session=False)
    )


def due_deliveries(limit: int = 100) -> list[str]:
    now = datetime.now(UTC)
    with session_scope() as session:
        rows = session.scalars(
            select(WebhookDelivery.id)
            .where(WebhookDelivery.state == DeliveryState.PENDING.value, WebhookDelivery.next_attempt_at <= now)
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
        )
        return [str(r) for r in rows]
