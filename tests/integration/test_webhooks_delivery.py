"""Webhook delivery against a real HTTP receiver and Postgres, on a compressed clock (backoff of seconds).

Every attempt goes through ``webhooks.deliver`` exactly as the relay task calls it; a tight loop stands in for
the beat schedule so the measured gaps are the configured backoff (with its jitter), not the relay period.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from core.env import SettingsError
from core.settings import Settings
from tests.conftest import Keys, Services, bearer, delivery_row, insert_delivery
from tests.support.webhook_receiver import Canary, Receiver, Reply


@pytest.fixture
def settings(services: Services) -> Settings:
    from core.settings import get_settings

    return dataclasses.replace(
        get_settings(),
        webhook_backoff_s=(1.0, 2.0, 4.0),
        webhook_max_attempts=4,
        webhook_timeout_s=0.5,
        webhook_allow_private=True,  # the receiver is on 127.0.0.1
    )


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def _receiver(receivers: list[Receiver], *replies: Reply) -> Receiver:
    r = Receiver(list(replies))
    receivers.append(r)
    return r


def _drive(delivery_id: uuid.UUID, settings: Settings, timeout_s: float = 30) -> Any:
    """Play the relay: attempt the delivery whenever it is due, until it leaves `pending`."""
    from workers import webhooks

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        webhooks.deliver(str(delivery_id), settings)
        row = delivery_row(delivery_id)
        if row.state != "pending":
            return row
        time.sleep(0.02)
    raise AssertionError(f"delivery {delivery_id} still pending after {timeout_s} s")


def _gaps(receiver: Receiver) -> list[float]:
    times = [h["at"] for h in receiver.received]
    return [b - a for a, b in itertools.pairwise(times)]


def test_retry_schedule_follows_the_configured_backoff_then_fails_visibly_through_the_api(
    settings: Settings, receivers: list[Receiver], keys: Keys
) -> None:
    from api.app import create_app

    receiver = _receiver(receivers, Reply(500))
    delivery_id = insert_delivery(receiver.url)
    row = _drive(delivery_id, settings)
    assert row.state == "failed" and row.attempts == 4 and row.last_status == 500
    gaps = _gaps(receiver)
    assert len(gaps) == 3
    for gap, base in zip(gaps, settings.webhook_backoff_s, strict=True):
        # ±20% jitter; the loop adds a few tens of ms of polling.
        assert 0.8 * base - 0.05 <= gap <= 1.2 * base + 0.3, (gaps, settings.webhook_backoff_s)

    client = create_app().test_client()
    view = client.get(f"/v1/jobs/{row.job_id}/webhooks", headers=bearer(keys.submitter))
    assert view.status_code == 200, view.get_json()
    (shown,) = view.get_json()["deliveries"]
    assert shown["state"] == "failed" and shown["attempts"] == 4 and shown["last_status"] == 500


def test_backoff_is_jittered_within_twenty_percent(settings: Settings) -> None:
    from workers.webhooks import backoff_s

    for attempts, base in ((1, 1.0), (2, 2.0), (3, 4.0), (9, 4.0)):  # past the end, the last step repeats
        samples = [backoff_s(settings, attempts) for _ in range(400)]
        assert all(0.8 * base <= s <= 1.2 * base for s in samples)
        assert max(samples) - min(samples) > 0.2 * base, "spread out, so retries do not herd"


def test_backoff_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from core.settings import load_settings

    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("VERITY_WEBHOOK_BACKOFF_S", "1, 2,4")
    assert load_settings().webhook_backoff_s == (1.0, 2.0, 4.0)
    for bad in ("1,x", "0,1", "-1"):
        monkeypatch.setenv("VERITY_WEBHOOK_BACKOFF_S", bad)
        with pytest.raises(SettingsError, match="VERITY_WEBHOOK_BACKOFF_S"):
            load_settings()


def test_signatures_verify_the_id_is_stable_and_the_timestamp_changes_per_attempt(
    settings: Settings, receivers: list[Receiver]
) -> None:
    from workers.webhooks import sign

    receiver = _receiver(receivers, Reply(503), Reply(204))
    delivery_id = insert_delivery(receiver.url)
    # At least 1.2 s between the attempts, so their whole-second timestamps must differ.
    row = _drive(delivery_id, dataclasses.replace(settings, webhook_backoff_s=(1.5,)))
    assert row.state == "delivered" and row.attempts == 2
    first, second = receiver.received
    verifier = Webhook(settings.webhook_secret)
    for hook in (first, second):
        assert verifier.verify(hook["body"], hook["headers"])["type"] == "job.succeeded"
    assert first["headers"]["webhook-id"] == second["headers"]["webhook-id"] == f"msg_{delivery_id.hex}"
    assert first["headers"]["webhook-timestamp"] != second["headers"]["webhook-timestamp"]
    assert first["body"] == second["body"], "the same event, byte for byte"

    with pytest.raises(WebhookVerificationError):
        verifier.verify(second["body"].replace(b"job.succeeded", b"job.failed"), second["headers"])
    stale = int(second["headers"]["webhook-timestamp"]) - 600  # outside the library's 5-minute tolerance
    msg_id = second["headers"]["webhook-id"]
    replayed = {
        **second["headers"],
        "webhook-timestamp": str(stale),
        "webhook-signature": sign(settings.webhook_secret, msg_id, stale, second["body"]),
    }
    with pytest.raises(WebhookVerificationError):
        verifier.verify(second["body"], replayed)


@pytest.mark.parametrize("status", [200, 202, 204])
def test_2xx_is_success(settings: Settings, receivers: list[Receiver], status: int) -> None:
    receiver = _receiver(receivers, Reply(status))
    row = _drive(insert_delivery(receiver.url), settings)
    assert row.state == "delivered" and row.attempts == 1 and row.delivered_at is not None
    assert len(receiver.received) == 1


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_3xx_is_not_followed_and_counts_as_a_failure(
    settings: Settings, receivers: list[Receiver], status: int
) -> None:
    canary = Canary()
    try:
        receiver = _receiver(receivers, Reply(status, {"Location": f"http://127.0.0.1:{canary.port}/"}))
        quick = dataclasses.replace(settings, webhook_backoff_s=(0.2,), webhook_max_attempts=2)
        row = _drive(insert_delivery(receiver.url), quick)
        assert row.state == "failed" and row.attempts == 2 and row.last_status == status
        assert canary.connections == 0, "the redirect was followed"
    finally:
        canary.close()


def test_a_timeout_counts_as_a_failure(settings: Settings, receivers: list[Receiver]) -> None:
    from workers import webhooks

    receiver = _receiver(receivers, Reply(204, delay_s=2.0), Reply(204))
    delivery_id = insert_delivery(receiver.url)
    assert webhooks.deliver(str(delivery_id), settings) == "pending"
    row = delivery_row(delivery_id)
    assert row.last_status is None and "Timeout" in row.last_error and row.attempts == 1
    row = _drive(delivery_id, settings)
    assert row.state == "delivered" and row.attempts == 2


def test_410_disables_the_delivery_and_the_tenants_other_pending_ones_to_that_url(
    settings: Settings, receivers: list[Receiver]
) -> None:
    receiver = _receiver(receivers, Reply(410))
    gone = insert_delivery(receiver.url)
    sibling = insert_delivery(receiver.url)  # another job of the same tenant, same endpoint
    other_tenant = insert_delivery(receiver.url, tenant="globex")
    row = _drive(gone, settings)
    assert row.state == "disabled" and row.attempts == 1 and row.last_status == 410
    assert delivery_row(sibling).state == "disabled" and "410" in delivery_row(sibling).last_error
    assert delivery_row(other_tenant).state == "pending", "another tenant's endpoint is its own business"
    assert len(receiver.received) == 1, "a disabled delivery is never sent again"


@pytest.mark.parametrize("retry_after", ["3", "HTTP-DATE"])
def test_retry_after_is_honoured(settings: Settings, receivers: list[Receiver], retry_after: str) -> None:
    from email.utils import formatdate

    value = formatdate(time.time() + 4, usegmt=True) if retry_after == "HTTP-DATE" else retry_after
    receiver = _receiver(receivers, Reply(503, {"Retry-After": value}), Reply(204))
    row = _drive(insert_delivery(receiver.url), settings)
    assert row.state == "delivered" and row.attempts == 2
    (gap,) = _gaps(receiver)
    assert gap >= 2.5, f"retried after {gap:.2f} s, before the {value!r} the receiver asked for (backoff was 1 s)"
