"""End to end: gunicorn API + a real Celery worker process, real Postgres, Redis and an S3 server.

A real and a fake clip go in through the HTTP API; each job reaches SUCCEEDED with a result and frame
scores in Postgres, and the client's webhook receives exactly one signed delivery per job that verifies
with the `standardwebhooks` library. Bad files end FAILED with a code, never stuck.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest
import requests
from sqlalchemy import func, select
from standardwebhooks.webhooks import Webhook

from tests.conftest import Keys, bearer, shared_file
from tests.e2e.conftest import Stack, hooks_for, submit, wait_terminal

pytestmark = pytest.mark.e2e


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


def test_broken_files_get_a_clear_4xx_or_end_failed_with_a_code(stack: Stack, keys: Keys) -> None:
    """Whatever the file, never a 500 and never a job left QUEUED/RUNNING: the API refuses it with a coded
    4xx from its container metadata, or the worker ends the job FAILED with a code and a job.failed webhook
    (or SUCCEEDED, when a damaged file still holds enough decodable frames)."""
    real = shared_file("videos/real/retalking_2.mp4").read_bytes()
    half = len(real) // 2
    cases = {
        "truncated": real[: len(real) // 5],
        "garbage-after-ftyp": real[:32] + os.urandom(4096),
        "scrambled-frames": real[:half] + os.urandom(len(real) - half),
    }
    outcomes = {}
    for name, data in cases.items():
        response = requests.post(
            f"{stack.base}/v1/jobs",
            headers=bearer(keys.submitter),
            files={"file": (f"{name}.mp4", data, "video/mp4")},
            data={"webhook_url": stack.receiver.url, "max_frames": "8"},
            timeout=60,
        )
        if response.status_code != 202:
            assert 400 <= response.status_code < 500, response.text
            assert response.json()["error"]["code"], response.text
            outcomes[name] = (response.status_code, response.json()["error"]["code"])
            continue
        done = wait_terminal(stack, keys.submitter, response.json()["id"])
        outcomes[name] = (done["status"], (done["error"] or {}).get("code"))
        if done["status"] == "SUCCEEDED":
            continue
        assert done["status"] == "FAILED", done
        assert done["error"]["code"] and done["error"]["message"], done
        hooks = hooks_for(stack, done["id"])
        assert len(hooks) == 1 and json.loads(hooks[0]["body"])["type"] == "job.failed"
    print("broken files:", outcomes)
