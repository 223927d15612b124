"""Batches (POST /v1/batches) and short waits (POST /v1/jobs with ``wait``) against real Postgres, Redis and S3:
creation and polling, idempotency, the item limit, and exactly one batch.completed however the items end."""

from __future__ import annotations

import io
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from tests.conftest import Keys, Services, bearer
from tests.support.http import body
from tests.support.results import MINIMAL_RESULT
from tests.support.videos import tiny_mp4

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture(scope="module")
def client(services: Services) -> Iterator[FlaskClient]:
    from api.app import create_app
    from core.settings import get_settings

    settings = replace(get_settings(), rate_limit_per_min=0, max_batch_items=3, max_wait_s=1.0)
    with create_app(settings).test_client() as c:
        yield c


def post_batch(
    client: FlaskClient, key: str, files: list[bytes], key_header: str | None = None, **fields: Any
) -> TestResponse:
    headers = bearer(key) | ({"Idempotency-Key": key_header} if key_header else {})
    data: dict[str, Any] = {"file": [(io.BytesIO(f), f"clip{i}.mp4") for i, f in enumerate(files)], **fields}
    return client.post("/v1/batches", data=data, headers=headers, content_type="multipart/form-data")


def _count(model: Any) -> int:
    from db.session import session_scope

    with session_scope() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def _batch_jobs(batch: dict[str, Any]) -> list[uuid.UUID]:
    return [uuid.UUID(item["job_id"]) for item in batch["items"]]


def _completions(batch: dict[str, Any]) -> list[Any]:
    """The batch.completed delivery rows of the batch (each is attached to the item that ended last)."""
    from db.models import WebhookDelivery
    from db.session import session_scope

    with session_scope() as s:
        query = select(WebhookDelivery).where(
            WebhookDelivery.event == "batch.completed", WebhookDelivery.job_id.in_(_batch_jobs(batch))
        )
        return list(s.scalars(query))


def _complete(job_id: uuid.UUID, barrier: threading.Barrier | None = None) -> None:
    from db import finish, jobs

    claim = jobs.claim(str(job_id), lease_s=60)
    assert claim is not None
    if barrier is not None:
        barrier.wait()
    assert finish.complete(claim, MINIMAL_RESULT, [], {"type": "job.succeeded"}) is not False


def test_a_batch_is_created_polled_and_kept_per_tenant(client: FlaskClient, keys: Keys) -> None:
    from db.models import Job
    from db.session import session_scope

    response = post_batch(client, keys.submitter, [tiny_mp4(1), tiny_mp4(2)], webhook_url=HOOK)
    assert response.status_code == 202, response.json
    batch = body(response)
    assert response.headers["Location"] == f"/v1/batches/{batch['id']}"
    assert batch["status"] == "QUEUED" and batch["total"] == 2 and batch["counts"]["QUEUED"] == 2
    assert [item["filename"] for item in batch["items"]] == ["clip0.mp4", "clip1.mp4"]
    assert batch["items"][0]["links"]["result"] == f"/v1/jobs/{batch['items'][0]['job_id']}/result"
    polled = client.get(f"/v1/batches/{batch['id']}", headers=bearer(keys.submitter))
    assert polled.status_code == 200 and body(polled)["items"] == batch["items"]
    with session_scope() as s:
        rows = list(s.scalars(select(Job).where(Job.id.in_(_batch_jobs(batch)))))
    assert {str(j.batch_id) for j in rows} == {batch["id"]}
    assert all(j.webhook_url is None for j in rows), "per-item webhooks were not asked for"
    assert client.get(f"/v1/batches/{batch['id']}", headers=bearer(keys.other_tenant)).status_code == 404
    assert client.get("/v1/batches/not-a-uuid", headers=bearer(keys.submitter)).status_code == 404
    item = client.get(f"/v1/jobs/{batch['items'][0]['job_id']}", headers=bearer(keys.submitter))
    assert item.status_code == 200, "each item is a job of its own"


def test_per_item_webhooks_go_to_every_job(client: FlaskClient, keys: Keys) -> None:
    from db.models import Job
    from db.session import session_scope

    batch = body(post_batch(client, keys.submitter, [tiny_mp4(3)], webhook_url=HOOK, per_item_webhooks="true"))
    with session_scope() as s:
        assert s.scalar(select(Job.webhook_url).where(Job.id == _batch_jobs(batch)[0])) == HOOK


def test_the_idempotency_key_replays_the_batch_and_refuses_another_request(client: FlaskClient, keys: Keys) -> None:
    from db.models import Batch

    key = f"batch-{uuid.uuid4()}"
    first = post_batch(client, keys.submitter, [tiny_mp4(4), tiny_mp4(5)], key)
    assert first.status_code == 202
    batches = _count(Batch)
    again = post_batch(client, keys.submitter, [tiny_mp4(4), tiny_mp4(5)], key)
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert body(again)["id"] == body(first)["id"] and _count(Batch) == batches
    other = post_batch(client, keys.submitter, [tiny_mp4(4)], key)
    assert other.status_code == 422 and body(other)["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    elsewhere = post_batch(client, keys.other_tenant, [tiny_mp4(4)], key)
    assert elsewhere.status_code == 202, "keys are per tenant"


def test_too_many_items_or_one_bad_item_refuses_the_whole_batch(client: FlaskClient, keys: Keys) -> None:
    from db.models import Batch, Job

    before = (_count(Batch), _count(Job))
    too_many = post_batch(client, keys.submitter, [tiny_mp4(i) for i in range(4)])
    assert too_many.status_code == 422 and body(too_many)["error"]["code"] == "TOO_MANY_ITEMS"
    bad = post_batch(client, keys.submitter, [tiny_mp4(1), b"not a video at all, just text"])
    assert bad.status_code == 415, bad.json
    assert (_count(Batch), _count(Job)) == before, "nothing recorded"
    empty = client.post(
        "/v1/batches", data={"webhook_url": HOOK}, headers=bearer(keys.submitter), content_type="multipart/form-data"
    )
    assert empty.status_code == 400 and body(empty)["error"]["code"] == "MISSING_FILE"


@pytest.mark.parametrize("round_", range(3))
def test_the_last_two_items_finishing_at_once_send_one_batch_completed(
    client: FlaskClient, keys: Keys, round_: int
) -> None:
    batch = body(post_batch(client, keys.submitter, [tiny_mp4(1), tiny_mp4(2)], webhook_url=HOOK))
    barrier = threading.Barrier(2)
    threads = [threading.Thread(target=_complete, args=(job_id, barrier)) for job_id in _batch_jobs(batch)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    completions = _completions(batch)
    assert len(completions) == 1, completions
    assert completions[0].payload["data"]["counts"]["SUCCEEDED"] == 2
    polled = body(client.get(f"/v1/batches/{batch['id']}", headers=bearer(keys.submitter)))
    assert polled["status"] == "COMPLETED" and polled["completed_at"]
    assert [item["verdict"] for item in polled["items"]] == ["REAL", "REAL"]


def test_cancel_and_max_attempts_complete_a_batch_too(client: FlaskClient, keys: Keys) -> None:
    from db import batches, jobs

    batch = body(post_batch(client, keys.submitter, [tiny_mp4(1), tiny_mp4(2)], webhook_url=HOOK))
    first, second = _batch_jobs(batch)
    exhausted = jobs.take(str(first), 60, max_attempts=0)
    assert exhausted.reason == "exhausted" and _completions(batch) == []
    cancelled = client.delete(f"/v1/jobs/{second}", headers=bearer(keys.submitter))
    assert cancelled.status_code == 200
    [completion] = _completions(batch)
    assert completion.job_id == second and batches.completion_delivery(second) == completion.id
    assert completion.payload["data"]["batch_id"] == batch["id"]
    assert {k: n for k, n in completion.payload["data"]["counts"].items() if n} == {"FAILED": 1, "CANCELLED": 1}
    assert client.delete(f"/v1/jobs/{second}", headers=bearer(keys.submitter)).status_code == 200
    assert len(_completions(batch)) == 1, "cancelling again completes nothing again"


def post_job(client: FlaskClient, key: str, name: str, **fields: Any) -> TestResponse:
    data = {"file": (io.BytesIO(tiny_mp4(7)), name), **fields}
    return client.post("/v1/jobs", data=data, headers=bearer(key), content_type="multipart/form-data")


@pytest.fixture(autouse=True)
def no_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """This module's jobs are ended by the tests themselves: none is sent to the broker, where a real worker (the
    session's end-to-end stack shares it) could take it first."""
    monkeypatch.setattr("api.jobs.enqueue_detect", lambda job_id: None)
    monkeypatch.setattr("api.batches.enqueue_detect", lambda job_id: None)


def test_a_wait_that_runs_out_answers_202_within_the_cap(client: FlaskClient, keys: Keys) -> None:
    started = time.monotonic()
    response = post_job(client, keys.submitter, "slow.mp4", wait="30")
    assert response.status_code == 202 and "result" not in body(response)
    assert time.monotonic() - started < 1.0 + 2.0, "held no longer than VERITY_MAX_WAIT_S (1 s here) and a poll"


def test_a_job_that_ends_during_the_wait_comes_back_with_its_result(client: FlaskClient, keys: Keys) -> None:
    from db.models import Job
    from db.session import session_scope

    name = f"{uuid.uuid4().hex}.mp4"

    def worker() -> None:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with session_scope() as s:
                job_id = s.scalar(select(Job.id).where(Job.filename == name))
            if job_id is not None:
                _complete(job_id)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=worker)
    thread.start()
    response = post_job(client, keys.submitter, name, wait="5")
    thread.join(10)
    assert response.status_code == 200, response.json
    job = body(response)
    assert job["status"] == "SUCCEEDED" and job["result"]["verdict"] == "REAL"
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"


def test_a_replayed_finished_job_with_a_wait_is_200_with_its_result(client: FlaskClient, keys: Keys) -> None:
    key = f"wait-{uuid.uuid4()}"
    headers = bearer(keys.submitter) | {"Idempotency-Key": key}
    data: dict[str, Any] = {"file": (io.BytesIO(tiny_mp4(8)), "done.mp4")}
    first = body(client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data"))
    _complete(uuid.UUID(first["id"]))
    data = {"file": (io.BytesIO(tiny_mp4(8)), "done.mp4"), "wait": "1"}
    again = client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert body(again)["result"]["verdict"] == "REAL"
    without = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(tiny_mp4(8)), "done.mp4")},
        headers=headers,
        content_type="multipart/form-data",
    )
    assert "result" not in body(without), "no wait: the response is what it always was"
