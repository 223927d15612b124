"""The ``verity`` CLI against the real API over HTTP: exit codes, --json, progress on stderr, keys via the DB."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from client.cli import main
from core.results import (
    Box,
    DetectionPlan,
    JobResult,
    ModelScore,
    Preprocessing,
    Track,
    TrackDetection,
    Tracks,
)
from core.vocabulary import Verdict
from tests.conftest import REPO, Services
from tests.support.live_api import LIVE_API_KEY_CACHE_S, Tenant, make_job
from tests.support.services import free_port
from tests.support.videos import MP4_HEAD


@pytest.fixture
def env(live_api: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch) -> Tenant:
    monkeypatch.setenv("VERITY_URL", live_api)
    monkeypatch.setenv("VERITY_API_KEY", tenant.submitter)
    return tenant


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_documents_the_exit_codes() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "verity"), "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert out.returncode == 0
    for line in ("0  success", "2  usage error", "3  auth", "4  not found", "5  the job FAILED", "6  timed out"):
        assert line in out.stdout, line
    assert "7  server or network error" in out.stdout


def test_usage_errors_exit_2(env: Tenant, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    for argv in ([], ["submit"], ["submit", "x.mp4", "--frames", "0"], ["feedback", "j", "--label", "MAYBE"]):
        with pytest.raises(SystemExit) as usage:
            main(argv)
        assert usage.value.code == 2, argv
    code, _, err = run(capsys, "submit", str(tmp_path / "missing.mp4"))
    assert code == 2 and "not a readable file" in err
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4_HEAD)
    code, out, err = run(capsys, "submit", str(clip), "--webhook-url", "ftp://example.com/x")
    assert code == 2 and "INVALID_WEBHOOK_URL" in err and out == ""


def test_auth_errors_exit_3_with_a_clear_message(
    env: Tenant, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, err = run(capsys, "status", str(uuid.uuid4()), "--api-key", "vrt_000000000000_wrong")
    assert code == 3 and out == ""
    assert "401 UNAUTHENTICATED" in err and "VERITY_API_KEY" in err
    running = make_job(env.name, "SUCCEEDED")
    code, _, err = run(capsys, "feedback", running, "--label", "fake")
    assert code == 3 and "403 FORBIDDEN" in err
    monkeypatch.delenv("VERITY_API_KEY")
    code, _, err = run(capsys, "jobs")
    assert code == 3 and "no API key" in err


def test_not_found_exits_4(env: Tenant, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("status", "result", "cancel", "webhooks"):
        code, _, err = run(capsys, command, str(uuid.uuid4()))
        assert code == 4 and "NOT_FOUND" in err, command


def test_status_and_result_exit_codes_follow_the_job(env: Tenant, capsys: pytest.CaptureFixture[str]) -> None:
    running = make_job(env.name, "RUNNING", stage="scoring", progress=0.55)
    code, out, _ = run(capsys, "status", running, "--json")
    assert code == 0 and json.loads(out)["stage"] == "scoring"
    code, out, _ = run(capsys, "status", running)
    assert code == 0 and "RUNNING" in out and " 55%" in out
    code, _, err = run(capsys, "result", running)
    assert code == 2 and "RESULT_NOT_READY" in err

    failed = make_job(env.name, "FAILED", error_code="CORRUPT_MEDIA", error_message="not a video")
    code, out, _ = run(capsys, "status", failed)
    assert code == 5 and "CORRUPT_MEDIA: not a video" in out
    code, out, _ = run(capsys, "result", failed, "--json")
    assert code == 5 and json.loads(out)["job"]["error"]["code"] == "CORRUPT_MEDIA"
    cancelled = make_job(env.name, "CANCELLED")
    code, _, _ = run(capsys, "result", cancelled)
    assert code == 5


def test_wait_timeout_exits_6_after_progress_lines(env: Tenant, capsys: pytest.CaptureFixture[str]) -> None:
    running = make_job(env.name, "RUNNING", stage="detecting_faces", progress=0.3)
    code, out, err = run(capsys, "status", running, "--wait", "--poll", "0.05", "--wait-timeout", "0.3")
    assert code == 6 and out == ""
    assert err.splitlines()[0] == "progress: RUNNING detecting_faces 30%"
    assert "WAIT_TIMEOUT" in err


def test_network_error_exits_7(env: Tenant, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--url", f"http://127.0.0.1:{free_port()}", "jobs", "--timeout", "2")
    assert code == 7 and "NETWORK_ERROR" in err and "is the API running" in err


def test_jobs_and_cancel_with_json(env: Tenant, capsys: pytest.CaptureFixture[str]) -> None:
    queued = make_job(env.name, "QUEUED")
    code, out, _ = run(capsys, "cancel", queued, "--json")
    assert code == 0 and json.loads(out)["status"] == "CANCELLED"
    code, out, _ = run(capsys, "jobs", "--status", "cancelled", "--json", "--limit", "500")
    listed = json.loads(out)["jobs"]
    assert code == 0 and queued in {j["id"] for j in listed} and {j["status"] for j in listed} == {"CANCELLED"}
    code, out, _ = run(capsys, "jobs", "--limit", "1")
    assert code == 0 and len(out.strip().splitlines()) == 1


def test_keys_go_to_the_database(services: Services, live_api: str, capsys: pytest.CaptureFixture[str]) -> None:
    tenant = f"cli-{uuid.uuid4().hex[:8]}"
    code, out, _ = run(capsys, "keys", "create", "--tenant", tenant, "--role", "submitter", "--name", "cli")
    assert code == 0
    issued = json.loads(out)
    code, out, _ = run(capsys, "--url", live_api, "jobs", "--api-key", issued["key"], "--json")
    assert code == 0 and json.loads(out) == {"jobs": []}
    code, out, _ = run(capsys, "keys", "list")
    assert code == 0 and issued["prefix"] in out
    code, out, _ = run(capsys, "keys", "revoke", issued["prefix"])
    assert code == 0 and "revoked" in out
    time.sleep(LIVE_API_KEY_CACHE_S + 0.1)  # the API trusts a key it checked for that long
    code, _, _ = run(capsys, "--url", live_api, "jobs", "--api-key", issued["key"])
    assert code == 3
    code, _, err = run(capsys, "keys", "revoke", "000000000000")
    assert code == 4 and "no key" in err


def stored_result(tenant: str) -> str:
    """A job finished the way a worker finishes one (claim, then finish.complete): two face tracks, three
    members (one of them failed), each fed its own crop."""
    from db import finish, jobs

    job_id = make_job(tenant, "QUEUED", filename="two-faces.mp4")
    box = Box(10.0, 20.0, 74.0, 84.0)
    tracks = tuple(
        Track(
            track_id=track_id,
            detections=(TrackDetection(0, 0.0, box), TrackDetection(4, 0.4, box)),
            score=score,
            raw_fused=score,
            frames=2,
            per_model={"meso4_df": score},
        )
        for track_id, score in ((0, 0.2), (1, 0.81))
    )
    result = JobResult(
        verdict=Verdict.FAKE,
        score=0.81,
        raw_score=0.78,
        method="weighted_average",
        t_low=0.3,
        t_high=0.7,
        frames_sampled=8,
        faces_found=4,
        tracks=Tracks(frames_with_face=4, detection=DetectionPlan(1.0, 40.0, 5), worst_track=1, tracks=tracks),
        per_model={
            "meso4_df": ModelScore("mean", 1.0, 2, 0.9, 0.85),
            "xception_ffpp": ModelScore("confident", 0.5, 2, 0.65, 0.7),
            "effort_clip": ModelScore("mean", 0.0, 0, None, None, error="RuntimeError: out of memory"),
        },
        preprocessing={
            "meso4_df": Preprocessing("seed", 256, "half"),
            "xception_ffpp": Preprocessing("square_13", 299, "half"),
        },
        model_pack="test@1",
        test_pack=True,
    )
    claim = jobs.claim(job_id, lease_s=60)
    assert claim is not None
    assert finish.complete(claim, result, [], {}) is not False
    return job_id


def test_result_and_status_read_as_text_for_a_stored_result(env: Tenant) -> None:
    """The human output of `verity result` and `verity status`, run as the installed command: the verdict, one
    count per face track (not the keys of the tracks object) and one line per model with what it was fed."""
    job_id = stored_result(env.name)
    command = [str(Path(sys.executable).parent / "verity")]
    result = subprocess.run([*command, "result", job_id], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:3] == [
        "verdict   FAKE",
        "score     0.810   (REAL below 0.300, FAKE from 0.700; weighted_average)",
        "faces     4 in 8 sampled frames, 2 track(s)",
    ]
    # One line per model, in the order the JSONB column keeps its keys (by length, not as written).
    assert sorted(lines[3:-1]) == [
        "  effort_clip              RuntimeError: out of memory",
        "  meso4_df                 calibrated 0.850  raw 0.900  weight 1.00  (seed 256 px, half)",
        "  xception_ffpp            calibrated 0.700  raw 0.650  weight 0.50  (square_13 299 px, half)",
    ]
    assert lines[-1] == "pack      test@1  (TEST PACK: not a real verdict)"

    status = subprocess.run([*command, "status", job_id], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    job_lines = status.stdout.splitlines()
    assert job_lines[0].split() == [job_id, "SUCCEEDED", "done", "100%"]
    assert job_lines[1].startswith("file      two-faces.mp4 (")
    assert job_lines[2].startswith("created   ") and "finished -" not in job_lines[2]
