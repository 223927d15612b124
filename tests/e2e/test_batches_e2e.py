"""End to end: a batch of two real clips through gunicorn and a real worker, to both verdicts and exactly one
signed batch.completed webhook at the receiver (items' own webhooks off)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import requests
from standardwebhooks.webhooks import Webhook

from tests.conftest import Keys, bearer, shared_file
from tests.e2e.conftest import JOB_TIMEOUT_S, Stack, hooks_for

pytestmark = pytest.mark.e2e

CLIPS = ("videos/real/retalking_2.mp4", "videos/fake/sberswap_elon.mp4")


def test_a_batch_of_two_clips_ends_with_both_verdicts_and_one_batch_webhook(stack: Stack, keys: Keys) -> None:
    files = [("file", (clip.rsplit("/", 1)[1], shared_file(clip).read_bytes(), "video/mp4")) for clip in CLIPS]
    response = requests.post(
        f"{stack.base}/v1/batches",
        headers=bearer(keys.submitter),
        files=files,
        data={"webhook_url": stack.receiver.url},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    batch: dict[str, Any] = response.json()
    assert batch["total"] == 2

    deadline = time.monotonic() + JOB_TIMEOUT_S
    while batch["status"] != "COMPLETED":
        assert time.monotonic() < deadline, f"batch stuck: {batch}"
        time.sleep(1)
        batch = requests.get(
            f"{stack.base}/v1/batches/{batch['id']}", headers=bearer(keys.submitter), timeout=10
        ).json()
    assert batch["counts"]["SUCCEEDED"] == 2, batch
    for item in batch["items"]:
        assert item["verdict"] in ("REAL", "FAKE", "UNCERTAIN") and 0.0 <= item["score"] <= 1.0
        result = requests.get(f"{stack.base}{item['links']['result']}", headers=bearer(keys.submitter), timeout=10)
        assert result.status_code == 200 and result.json()["verdict"] == item["verdict"]

    hooks = hooks_for(stack, batch["id"], about="batch_id")
    assert len(hooks) == 1, f"exactly one batch.completed, got {len(hooks)}"
    payload = Webhook(stack.secret).verify(hooks[0]["body"], hooks[0]["headers"])
    assert payload["type"] == "batch.completed" and payload["data"]["counts"]["SUCCEEDED"] == 2
    item_ids = {item["job_id"] for item in batch["items"]}
    item_hooks = [h for h in stack.receiver.received if json.loads(h["body"])["data"].get("job_id") in item_ids]
    assert item_hooks == [], "per-item webhooks were not asked for"
