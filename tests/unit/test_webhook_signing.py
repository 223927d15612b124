"""Our Standard Webhooks signature verifies with the reference library; tampering does not."""

from __future__ import annotations

import base64
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from workers.webhooks import sign

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()


def _headers(msg_id: str, ts: int, body: bytes) -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(SECRET, msg_id, ts, body)}


def test_signature_verifies_with_standardwebhooks() -> None:
    body = b'{"type":"job.succeeded","data":{"job_id":"x"}}'
    assert Webhook(SECRET).verify(body, _headers("msg_1", int(time.time()), body))["type"] == "job.succeeded"


def test_tampered_body_and_stale_timestamp_fail() -> None:
    body = b'{"type":"job.succeeded"}'
    now = int(time.time())
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"type":"job.failed"}', _headers("msg_1", now, body))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body, _headers("msg_1", now - 3600, body))
