"""End to end: gunicorn API + a real Celery worker process, real Postgres, Redis and an S3 server.

A real and a fake clip go in through the HTTP API; each job reaches SUCCEEDED with a result and frame
scores in Postgres, and the client's webhook receives exactly one signed delivery per job that verifies
with the `standardwebhooks` library. Bad files end FAILED with a code, never stuck.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from tests.conftest import REPO, Keys, Services, bearer, free_port, shared_file
from workers.demo import WebhookReceiver

pytestmark = pytest.mark.e2e

JOB_TIMEOUT_S = 600


@dataclass
class Stack:
    base: str
    receiver: WebhookReceiver
    secret: str
    logs: Path


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


@pytest.fixture(scope="module")
def stack(services: Services, keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e-logs")
    env = {**os.environ, **services.env, "PYTHONUNBUFFERED": "1"}
    port = free_port()
    api = subprocess.Popen(
        [_bin("gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "2", "api.app:create_app()"],
        cwd=REPO,
        env=env,
        stdout=(logs / "api.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    worker = subprocess.Popen(
        [
            _bin("celery"),
            "-A",
            "workers.celery_app",
            "worker",
            "-Q",
            "gpu,io",
            "-c",
            "1",
            "-B",
            "--loglevel",
            "INFO",
            "-n",
            f"e2e-{os.getpid()}@%h",
        ],
        cwd=REPO,
        env=env,
        stdout=(logs / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    receiver = WebhookReceiver()
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert time.monotonic() < deadline, (logs / "api.log").read_text()[-3000:]
            time.sleep(0.3)
        yield Stack(base, receiver, services.env["VERITY_WEBHOOK_SECRET"], logs)
    finally:
        for proc in (api, worker):
            proc.terminate()
        for proc in (api, worker):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
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


def hooks_for(stack: Stack, job_id: str, wait_s: float = 30) -> list[dict[str, Any]]:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        found = [h for h in stack.receiver.received if json.loads(h["body"])["data"]["job_id"] == job_id]
        if found:
            time.sleep(2)  # a duplicate delivery would arrive now, if there were one
            return [h for h in stack.receiver.received if json.loads(h["body"])["data"]["job_id"] == job_id]
        time.sleep(0.2)
    return []


@pytest.mark.parametrize(
    ("clip", "label"),
    [("videos/real/retalking_1.mp4", "REAL"), ("videos/fake/sberswap_elon.mp4", "FAKE")],
)
def test_video_to_signed_verdict(stack: Stack, keys: Keys, clip: str, label: str) -> None:
    from db.models import FrameScore, Result, WebhookDelivery
    from db.session import session_scope

    job = submit(stack, keys.submitter, shared_file(clip), name=Path(clip).name)
    done = wait_terminal(stack, keys.submitter, job["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["progress"] == 1.0
    assert done["_stages"][-1] == "done"

    result = requests.get(f"{stack.base}/v1/jobs/{job['id']}/result", headers=bearer(keys.submitter), timeout=10).json()
    assert result["verdict"] in ("REAL", "FAKE", "UNCERTAIN")
    assert 0.0 <= result["score"] <= 1.0
    assert result["thresholds"]["t_low"] < result["thresholds"]["t_high"]
    assert set(result["models"]) == {"meso4_df", "mesoinception_df"}
    for model in result["models"].values():
        assert 0.0 <= model["aggregated"] <= 1.0 and model["weight"] > 0
    assert result["faces_found"] >= 10, "a talking head is found in most sampled frames"
    assert result["test_pack"] is False

    with session_scope() as s:
        jid = uuid.UUID(job["id"])
        rows = s.scalar(select(func.count()).select_from(FrameScore).where(FrameScore.job_id == jid))
        assert rows == 2 * result["faces_found"], "one frame score per face per model"
        assert s.scalar(select(func.count()).select_from(Result).where(Result.job_id == jid)) == 1
        delivery = s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == jid)).one()

    hooks = hooks_for(stack, job["id"])
    assert len(hooks) == 1, f"exactly one webhook for {clip}, got {len(hooks)}"
    hook = hooks[0]
    payload = Webhook(stack.secret).verify(hook["body"], hook["headers"])
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["verdict"] == result["verdict"]
    assert hook["headers"]["webhook-id"] == delivery.webhook_id
    with pytest.raises(Exception):  # noqa: B017 - any verification error will do
        Webhook(stack.secret).verify(hook["body"].replace(b"SUCCEEDED", b"FAILED"), hook["headers"])


def test_moderator_feedback_on_a_finished_job(stack: Stack, keys: Keys) -> None:
    job = submit(stack, keys.submitter, shared_file("videos/real/liveportrait_d0.mp4"))
    assert wait_terminal(stack, keys.submitter, job["id"])["status"] == "SUCCEEDED"
    url = f"{stack.base}/v1/jobs/{job['id']}/feedback"
    denied = requests.post(url, json={"label": "REAL"}, headers=bearer(keys.submitter), timeout=10)
    assert denied.status_code == 403
    first = requests.post(
        url, json={"label": "FAKE", "category": "FALSE_NEGATIVE"}, headers=bearer(keys.moderator), timeout=10
    )
    assert first.status_code == 201, first.text
    second = requests.post(
        url,
        json={"label": "REAL", "category": "CONFIRMATION", "note": "checked"},
        headers=bearer(keys.moderator),
        timeout=10,
    )
    assert second.status_code == 201
    export = requests.get(f"{stack.base}/v1/feedback?all=1", headers=bearer(keys.moderator), timeout=10).json()
    mine = [f for f in export["feedback"] if f["job_id"] == job["id"]]
    assert [(f["label"], f["current"]) for f in mine] == [("FAKE", False), ("REAL", True)]

    # The same content again: the moderator's label on it overrides the detectors, and the result says so.
    again = submit(stack, keys.submitter, shared_file("videos/real/liveportrait_d0.mp4"), max_frames="8")
    assert wait_terminal(stack, keys.submitter, again["id"])["status"] == "SUCCEEDED"
    result = requests.get(
        f"{stack.base}/v1/jobs/{again['id']}/result", headers=bearer(keys.submitter), timeout=10
    ).json()
    assert result["verdict"] == "REAL"
    assert [o["kind"] for o in result["overrides"]] == ["known_content"]
    assert result["overrides"][0]["after"] == 0.0


def test_every_fake_clip_runs_through_the_api(stack: Stack, keys: Keys) -> None:
    fakes = sorted(shared_file("videos/fake").glob("*.mp4"))
    assert len(fakes) >= 17
    jobs = {clip.name: submit(stack, keys.submitter, clip, name=clip.name, max_frames="8") for clip in fakes}
    verdicts = {}
    for name, job in jobs.items():
        done = wait_terminal(stack, keys.submitter, job["id"])
        assert done["status"] == "SUCCEEDED", (name, done)
        result = requests.get(
            f"{stack.base}/v1/jobs/{job['id']}/result", headers=bearer(keys.submitter), timeout=10
        ).json()
        verdicts[name] = (result["verdict"], result["score"])
    print("fake clips through the API:", verdicts)
    assert all(v in ("REAL", "FAKE", "UNCERTAIN") for v, _ in verdicts.values())


def test_broken_files_end_failed_with_a_code(stack: Stack, keys: Keys, tmp_path: Path) -> None:
    real = shared_file("videos/real/retalking_2.mp4").read_bytes()
    cases = {
        "truncated": real[: len(real) // 5],
        "garbage-after-ftyp": real[:32] + os.urandom(4096),
    }
    jobs = {name: submit(stack, keys.submitter, data, name=f"{name}.mp4") for name, data in cases.items()}
    for name, job in jobs.items():
        done = wait_terminal(stack, keys.submitter, job["id"])
        if done["status"] == "SUCCEEDED":
            # A truncated file may still hold enough decodable frames for a verdict; that is fine.
            assert name == "truncated", done
            continue
        assert done["status"] == "FAILED", done
        assert done["error"]["code"] and done["error"]["message"], done
        hooks = hooks_for(stack, job["id"])
        assert len(hooks) == 1 and json.loads(hooks[0]["body"])["type"] == "job.failed"
