"""The running stack for end-to-end tests: gunicorn API + a real Celery worker process (with beat) + a live-stream
worker on real Postgres, Redis and an S3 server, plus a local webhook receiver and helpers to drive it over HTTP."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import Keys, Services, bearer
from tests.support.services import free_port
from tools import stack as processes
from tools.demo import WebhookReceiver

JOB_TIMEOUT_S = 600


@dataclass
class Stack:
    base: str
    receiver: WebhookReceiver
    secret: str
    logs: Path
    processes: processes.Stack
    env: dict[str, str]  # the stack's environment, for extra processes a test starts


# Package scope: the stack stops after the last e2e test, so its beat (the reaper) and its stream worker never act
# on the rows and streams the later tiers make in the same database and Redis without a worker.
@pytest.fixture(scope="package")
def stack(services: Services, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e-logs")
    # Sources served on loopback by the tests: the API's and the worker's source guard relaxed, as for webhooks.
    env = {**os.environ, **services.env, "PYTHONUNBUFFERED": "1", "VERITY_SOURCE_ALLOW_PRIVATE": "1"}
    # A killed stream worker's sessions are taken over within seconds (tests/e2e/test_streams_e2e.py).
    env["VERITY_STREAM_TAKEOVER_S"] = "3"
    port = free_port()
    # One worker on both queues with beat inside, on the production prefork pool (the demo runs solo).
    worker = processes.worker_service("worker", "gpu,io", "-c", "1", beat=True)
    services_ = [processes.api_service(f"127.0.0.1:{port}"), worker, processes.stream_worker_service()]
    procs = processes.Stack(services_, env=env, log_dir=logs)
    receiver = WebhookReceiver()
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            procs.wait_ready(base)
        except RuntimeError as exc:
            raise AssertionError(f"{exc}\n{(logs / 'api.log').read_text()[-3000:]}") from exc
        yield Stack(base, receiver, services.env["VERITY_WEBHOOK_SECRET"], logs, procs, env)
    finally:
        procs.stop()
        receiver.close()
        print("worker log tail:\n" + (logs / "worker.log").read_text()[-4000:])


def submit(stack: Stack, key: str, video: Path | bytes, name: str = "clip.mp4", **fields: str) -> dict[str, Any]:
    payload = video.read_bytes() if isinstance(video, Path) else video
    response = requests.post(
        f"{stack.base}/v1/jobs",
        headers=bearer(key),
        files={"file": (name, payload, "video/mp4")},
        data={"webhook_url": stack.receiver.url, **fields},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_terminal(stack: Stack, key: str, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    stages: list[str] = []
    while True:
        job: dict[str, Any] = requests.get(f"{stack.base}/v1/jobs/{job_id}", headers=bearer(key), timeout=10).json()
        if not stages or stages[-1] != job["stage"]:
            stages.append(job["stage"])
        if job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):
            job["_stages"] = stages
            return job
        assert time.monotonic() < deadline, f"job {job_id} stuck in {job['status']}/{job['stage']}"
        time.sleep(0.5)


def hooks_for(stack: Stack, job_id: str, wait_s: float = 30, about: str = "job_id") -> list[dict[str, Any]]:
    """The webhooks received about a job (or, with ``about="batch_id"``, about a batch)."""

    def received() -> list[dict[str, Any]]:
        return [h for h in stack.receiver.received if json.loads(h["body"])["data"].get(about) == job_id]

    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if received():
            time.sleep(2)  # a duplicate delivery would arrive now, if there were one
            return received()
        time.sleep(0.2)
    return []


def _ready(log: Path) -> bool:
    return log.exists() and "ready." in log.read_text(errors="replace")


def wait_ready(logs: Path, *names: str, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(_ready(logs / f"{name}.log") for name in names):
        assert time.monotonic() < deadline, f"stream workers {names} did not start"
        time.sleep(0.5)
