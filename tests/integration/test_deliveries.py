"""Webhook delivery routes against real Postgres: listing is tenant-scoped, redeliver resets a finished
delivery to pending (same webhook-id, fresh attempts) and enqueues it exactly once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Services, bearer, insert_job
from tests.support.http import body


@dataclass(frozen=True)
class Keys:
    tenant: str
    submitter: str
    other_tenant: str


@pytest.fixture(scope="module")
def client(services: Services) -> Iterator[FlaskClient]:
    from api.app import create_app

    with create_app().test_client() as c:
        yield c


@pytest.fixture(scope="module")
def keys(services: Services) -> Keys:
    from db.apikeys import create_key
    from db.session import session_scope

    tenant = f"hooks-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        mine = create_key(s, "hooks", tenant, "submitter").plaintext
        other = create_key(s, "hooks-other", f"{tenant}-other", "submitter").plaintext
    return Keys(tenant, mine, other)


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record enqueues instead of sending them: a live worker from the e2e stack would deliver them."""
    sent: list[str] = []
    monkeypatch.setattr("api.deliveries.enqueue_webhook", sent.append)
    return sent


def make_job(tenant: str) -> uuid.UUID:
    return insert_job(tenant, "SUCCEEDED", stage="done", webhook_url="https://example.com/hooks")


def make_delivery(tenant: str, state: str, event: str = "job.succeeded", **values: Any) -> tuple[str, str]:
    from db.models import WebhookDelivery
    from db.session import session_scope

    job_id, delivery_id = make_job(tenant), uuid.uuid4()
    with session_scope() as s:
        s.add(
            WebhookDelivery(
                id=delivery_id,
                job_id=job_id,
                event=event,
                url="https://example.com/hooks",
                payload={"type": event, "data": {"job_id": str(job_id)}},
                state=state,
                **values,
            )
        )
    return str(job_id), str(delivery_id)


def stored(delivery_id: str) -> Any:
    from db.models import WebhookDelivery
    from db.session import session_scope

    with session_scope() as s:
        return s.get(WebhookDelivery, uuid.UUID(delivery_id))


def test_list_shows_the_jobs_deliveries(client: FlaskClient, keys: Keys) -> None:
    failed_at = datetime.now(UTC) + timedelta(hours=2)
    job_id, delivery_id = make_delivery(
        keys.tenant, "failed", attempts=6, last_status=500, last_error="HTTP 500", next_attempt_at=failed_at
    )
    response = client.get(f"/v1/jobs/{job_id}/webhooks", headers=bearer(keys.submitter))
    assert response.status_code == 200, response.json
    (delivery,) = body(response)["deliveries"]
    assert delivery["id"] == delivery_id
    assert delivery["webhook_id"] == f"msg_{uuid.UUID(delivery_id).hex}"
    assert delivery["event"] == "job.succeeded" and delivery["state"] == "failed"
    assert (delivery["attempts"], delivery["last_status"], delivery["last_error"]) == (6, 500, "HTTP 500")
    assert datetime.fromisoformat(delivery["next_attempt_at"]) == failed_at
    assert delivery["delivered_at"] is None and delivery["payload"]["data"]["job_id"] == job_id


def test_a_job_without_deliveries_lists_none(client: FlaskClient, keys: Keys) -> None:
    job_id = make_job(keys.tenant)
    response = client.get(f"/v1/jobs/{job_id}/webhooks", headers=bearer(keys.submitter))
    assert response.status_code == 200 and response.json == {"deliveries": []}


def test_deliveries_are_tenant_scoped_and_need_a_key(client: FlaskClient, keys: Keys, enqueued: list[str]) -> None:
    job_id, delivery_id = make_delivery(keys.tenant, "failed")
    assert client.get(f"/v1/jobs/{job_id}/webhooks").status_code == 401
    other = client.get(f"/v1/jobs/{job_id}/webhooks", headers=bearer(keys.other_tenant))
    assert other.status_code == 404 and body(other)["error"]["code"] == "NOT_FOUND"
    url = f"/v1/jobs/{job_id}/webhooks/{delivery_id}/redeliver"
    assert client.post(url, headers=bearer(keys.other_tenant)).status_code == 404
    assert stored(delivery_id).state == "failed" and enqueued == []


@pytest.mark.parametrize("state", ["failed", "disabled", "delivered"])
def test_redeliver_resets_to_pending_and_enqueues(
    client: FlaskClient, keys: Keys, enqueued: list[str], state: str
) -> None:
    delivered_at = datetime.now(UTC) - timedelta(minutes=5) if state == "delivered" else None
    job_id, delivery_id = make_delivery(
        keys.tenant,
        state,
        attempts=6,
        last_status=410 if state == "disabled" else 500,
        delivered_at=delivered_at,
        next_attempt_at=datetime.now(UTC) + timedelta(days=1),
    )
    before = datetime.now(UTC)
    response = client.post(f"/v1/jobs/{job_id}/webhooks/{delivery_id}/redeliver", headers=bearer(keys.submitter))
    assert response.status_code == 202, response.json
    assert body(response)["state"] == "pending" and body(response)["attempts"] == 0
    assert body(response)["webhook_id"] == f"msg_{uuid.UUID(delivery_id).hex}"
    assert enqueued == [delivery_id]
    row = stored(delivery_id)
    assert row.state == "pending" and row.attempts == 0 and row.delivered_at is None
    assert before <= row.next_attempt_at <= datetime.now(UTC), "due now, so the relay would also pick it up"
    assert row.last_status == (410 if state == "disabled" else 500), "the last outcome stays visible"

    again = client.post(f"/v1/jobs/{job_id}/webhooks/{delivery_id}/redeliver", headers=bearer(keys.submitter))
    assert again.status_code == 409 and body(again)["error"]["code"] == "DELIVERY_PENDING"
    assert enqueued == [delivery_id], "a pending delivery is not enqueued twice"


def test_redeliver_by_webhook_id_and_unknown_ids(client: FlaskClient, keys: Keys, enqueued: list[str]) -> None:
    job_id, delivery_id = make_delivery(keys.tenant, "failed")
    webhook_id = f"msg_{uuid.UUID(delivery_id).hex}"
    response = client.post(f"/v1/jobs/{job_id}/webhooks/{webhook_id}/redeliver", headers=bearer(keys.submitter))
    assert response.status_code == 202 and enqueued == [delivery_id]

    _, other_delivery = make_delivery(keys.tenant, "failed")
    for bad in (str(uuid.uuid4()), "not-an-id", other_delivery):
        missing = client.post(f"/v1/jobs/{job_id}/webhooks/{bad}/redeliver", headers=bearer(keys.submitter))
        assert missing.status_code == 404 and body(missing)["error"]["code"] == "NOT_FOUND", bad
    assert stored(other_delivery).state == "failed", "a delivery is only reachable through its own job"


def test_redeliver_survives_a_broker_outage(client: FlaskClient, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    def broker_down(delivery_id: str) -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr("api.deliveries.enqueue_webhook", broker_down)
    job_id, delivery_id = make_delivery(keys.tenant, "failed")
    response = client.post(f"/v1/jobs/{job_id}/webhooks/{delivery_id}/redeliver", headers=bearer(keys.submitter))
    assert response.status_code == 202
    assert stored(delivery_id).state == "pending", "left due in Postgres for the relay task"
