"""The ``verity`` command, run as a subprocess against the running stack (gunicorn + a real Celery worker):
submit a clip and wait for its verdict with progress on stderr, --json, auth and not-found exit codes, and
webhook deliveries listed and redelivered with the same webhook-id."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import REPO, Keys, shared_file
from tests.e2e.conftest import JOB_TIMEOUT_S, Stack, hooks_for

pytestmark = pytest.mark.e2e

CLIP = "videos/fake/sberswap_elon.mp4"


def verity(stack: Stack, key: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERITY_URL": stack.base, "VERITY_API_KEY": key}
    return subprocess.run(
        [str(Path(sys.executable).parent / "verity"), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S + 60,
    )


def deliveries(stack: Stack, key: str, job_id: str) -> list[dict[str, Any]]:
    listed = verity(stack, key, "webhooks", job_id, "--json")
    assert listed.returncode == 0, listed.stderr
    found: list[dict[str, Any]] = json.loads(listed.stdout)["deliveries"]
    return found


def test_submit_wait_shows_progress_and_prints_the_verdict(stack: Stack, keys: Keys) -> None:
    done = verity(stack, keys.submitter, "submit", str(shared_file(CLIP)), "--wait", "--frames", "4")
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stderr.splitlines() if line.startswith("progress: ")]
    assert len(progress) >= 2, done.stderr
    assert progress[-1] == "progress: SUCCEEDED done 100%"
    assert len(progress) == len(set(progress)), "one line per change"
    assert all(re.fullmatch(r"progress: (QUEUED|RUNNING|SUCCEEDED) [a-z_]+ \d{1,3}%", line) for line in progress)
    verdict = next(line for line in done.stdout.splitlines() if line.startswith("verdict"))
    assert verdict.split()[1] in ("REAL", "FAKE", "UNCERTAIN", "NO_FACE")
    assert "meso4_df" in done.stdout and "SUCCEEDED" in done.stdout


def test_json_output_deliveries_and_redelivery(stack: Stack, keys: Keys) -> None:
    done = verity(
        stack,
        keys.submitter,
        "submit",
        str(shared_file(CLIP)),
        "--wait",
        "--frames",
        "4",
        "--json",
        "--webhook-url",
        stack.receiver.url,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    job, result = document["job"], document["result"]
    assert job["status"] == "SUCCEEDED" and job["params"]["max_frames"] == 4
    assert result["verdict"] in ("REAL", "FAKE", "UNCERTAIN", "NO_FACE") and result["job_id"] == job["id"]
    assert "progress: " in done.stderr, "progress still goes to stderr with --json"

    assert json.loads(verity(stack, keys.submitter, "status", job["id"], "--json").stdout)["id"] == job["id"]
    assert json.loads(verity(stack, keys.submitter, "result", job["id"], "--json").stdout) == result

    first = hooks_for(stack, job["id"])
    assert len(first) == 1
    (delivery,) = deliveries(stack, keys.submitter, job["id"])
    assert delivery["event"] == "job.succeeded" and delivery["state"] == "delivered"
    assert delivery["attempts"] == 1 and delivery["last_status"] == 204 and delivery["delivered_at"]
    assert delivery["webhook_id"] == first[0]["headers"]["webhook-id"]

    again = verity(stack, keys.submitter, "webhooks", job["id"], "--redeliver", delivery["webhook_id"])
    assert again.returncode == 0 and delivery["webhook_id"] in again.stdout, again.stderr
    deadline = time.monotonic() + 60
    while len(hooks := hooks_for(stack, job["id"], wait_s=1)) < 2:
        assert time.monotonic() < deadline, "the redelivery never reached the receiver"
    assert len(hooks) == 2
    assert {h["headers"]["webhook-id"] for h in hooks} == {delivery["webhook_id"]}, "same webhook-id"
    payload = Webhook(stack.secret).verify(hooks[1]["body"], hooks[1]["headers"])
    assert payload["type"] == "job.succeeded" and payload["data"]["job_id"] == job["id"]
    # The sender records the outcome just after the receiver answered.
    while (after := deliveries(stack, keys.submitter, job["id"])[0])["state"] != "delivered":
        assert time.monotonic() < deadline, after
        time.sleep(0.5)
    assert after["attempts"] == 1, "a redelivery starts a fresh retry budget"


def test_bad_key_exits_3_and_unknown_job_exits_4(stack: Stack, keys: Keys) -> None:
    bad = verity(stack, "vrt_000000000000_wrong", "submit", str(shared_file(CLIP)), "--wait")
    assert bad.returncode == 3 and bad.stdout == ""
    assert "401 UNAUTHENTICATED" in bad.stderr and "VERITY_API_KEY" in bad.stderr
    revoked = verity(stack, keys.revoked, "jobs")
    assert revoked.returncode == 3 and "invalid or revoked" in revoked.stderr
    missing = verity(stack, keys.submitter, "status", str(uuid.uuid4()))
    assert missing.returncode == 4 and "NOT_FOUND" in missing.stderr
    other = verity(stack, keys.other_tenant, "jobs", "--json")
    assert other.returncode == 0 and isinstance(json.loads(other.stdout)["jobs"], list)
