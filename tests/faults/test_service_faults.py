"""The broker, the database and the object store going away: Redis restarted with 50 jobs queued, Redis down at
submission, Postgres restarted mid-task (the API answers 503, never 500, while it is down), the object store
down for a minute with jobs queued and Postgres down for a minute at submission (outages delay jobs, they
neither fail them nor use up their attempts)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable

import pytest
import redis
import requests

from tests.conftest import bearer, shared_file
from tests.faults.conftest import FaultRow, StackFactory, scenario
from tests.support.services import PrivatePostgres, PrivateS3, wait_until
from tests.support.stack import Stack, duplicated
from tests.support.videos import CLIP

pytestmark = pytest.mark.slow

MID_INFERENCE = ("detecting_faces", "scoring")
OUTAGE_S = 60


def _clip() -> bytes:
    return shared_file(CLIP).read_bytes()


def _fill(row: FaultRow, stack: Stack, statuses: dict[str, str]) -> None:
    time.sleep(3)  # a duplicate webhook would land now, if there were one
    audit = stack.audit(list(statuses))
    row.jobs = len(statuses)
    row.completed = sum(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in statuses.values())
    row.lost = row.jobs - row.completed
    row.duplicated = duplicated(audit)
    assert row.lost == 0, {j: s for j, s in statuses.items() if s not in ("SUCCEEDED", "FAILED", "CANCELLED")}
    assert row.duplicated == 0, {j: a for j, a in audit.items() if a["results"] != 1 or a["webhook_ids"] != 1}


@scenario("5a Redis restarted with 50 jobs queued")
def test_redis_restart_with_50_jobs_queued_loses_none(make_stack: StackFactory, fault_row: FaultRow) -> None:
    stack = make_stack()
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu")
    stack.kill_group("gpu", signal.SIGSTOP)  # frozen while the queue fills, so all 50 sit in Redis
    clip = _clip()
    try:
        job_ids = [stack.submit(clip, max_frames=2) for _ in range(50)]
        queued = redis.Redis.from_url(stack.broker.url).llen("gpu")
        assert queued >= 49, queued  # the frozen worker may hold one prefetched message
        stack.broker.restart()  # no persistence: every queued message is gone
        assert redis.Redis.from_url(stack.broker.url).llen("gpu") == 0
    finally:
        stack.kill_group("gpu", signal.SIGCONT)
    restarted = time.monotonic()
    statuses = stack.wait_terminal(job_ids, 600)
    took = time.monotonic() - restarted
    _fill(fault_row, stack, statuses)
    assert set(statuses.values()) == {"SUCCEEDED"}, statuses
    assert "the broker came back without its data" in stack.log("io")
    fault_row.note = f"{queued} messages lost with Redis; the reaper re-sent them; all done {took:.0f} s after"


@scenario("6a broker down at submission")
def test_broker_down_at_submission_still_accepts_and_runs_later(make_stack: StackFactory, fault_row: FaultRow) -> None:
    stack = make_stack()
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu")
    stack.broker.kill()
    started = time.monotonic()
    response = stack.post_job(_clip())
    accept_s = time.monotonic() - started
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    time.sleep(3)
    job = stack.job(job_id)
    assert job["status"] == "QUEUED" and job["enqueued_at"] is None, job
    stack.broker.start()
    statuses = stack.wait_terminal([job_id], 240)
    _fill(fault_row, stack, statuses)
    assert statuses[job_id] == "SUCCEEDED"
    assert stack.job(job_id)["attempt"] == 1
    fault_row.note = f"202 in {accept_s:.1f} s with Redis down; the reaper enqueued it after Redis came back"


def _api_statuses(stack: Stack, job_id: str) -> dict[str, int]:
    headers = bearer(stack.key)
    calls: dict[str, Callable[[], requests.Response]] = {
        "GET /v1/jobs/<id>": lambda: requests.get(f"{stack.base}/v1/jobs/{job_id}", headers=headers, timeout=30),
        "GET /v1/jobs": lambda: requests.get(f"{stack.base}/v1/jobs", headers=headers, timeout=30),
        "GET /v1/jobs/<id>/result": lambda: requests.get(
            f"{stack.base}/v1/jobs/{job_id}/result", headers=headers, timeout=30
        ),
        "GET /v1/jobs/<id>/webhooks": lambda: requests.get(
            f"{stack.base}/v1/jobs/{job_id}/webhooks", headers=headers, timeout=30
        ),
        "DELETE /v1/jobs/<id>": lambda: requests.delete(f"{stack.base}/v1/jobs/{job_id}", headers=headers, timeout=30),
        "POST /v1/jobs": lambda: stack.post_job(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64),
        "GET /readyz": lambda: requests.get(f"{stack.base}/readyz", timeout=30),
    }
    return {name: call().status_code for name, call in calls.items()}


@scenario("5b Postgres restarted mid-task")
def test_postgres_restart_mid_task_job_ends_terminal_and_api_says_503(
    make_stack: StackFactory, private_postgres: PrivatePostgres, fault_row: FaultRow
) -> None:
    stack = make_stack(private_postgres.url)
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu")
    job_id = stack.submit(_clip())
    stack.wait_stage(job_id, MID_INFERENCE)
    private_postgres.stop()
    down_at = time.monotonic()
    seen: dict[str, set[int]] = {}
    try:
        while time.monotonic() - down_at < 12:  # longer than the rest of the inference: the save must wait
            for name, status in _api_statuses(stack, job_id).items():
                seen.setdefault(name, set()).add(status)
            time.sleep(0.5)
    finally:
        private_postgres.start()
    assert all(codes == {503} for codes in seen.values()), seen
    statuses = stack.wait_terminal([job_id], 240)
    _fill(fault_row, stack, statuses)
    assert statuses[job_id] == "SUCCEEDED"
    log = stack.log("gpu")
    assert "database unavailable" in log, "the worker met the outage (and rode it out)"
    attempt = stack.job(job_id)["attempt"]
    fault_row.note = f"every API route answered 503 while Postgres was down; finished as attempt {attempt}"
    wait_until(lambda: requests.get(f"{stack.base}/readyz", timeout=10).status_code == 200, 30, "readyz back")


def _attempts(stack: Stack, job_ids: list[str]) -> dict[str, tuple[int, int]]:
    """Per job: (attempts used, claims handed back for an outage)."""
    rows = stack.sql(
        "SELECT id::text, attempt - outage_retries, outage_retries FROM jobs WHERE id = ANY(%s::uuid[])", job_ids
    )
    return {job_id: (used, free) for job_id, used, free in rows}


@scenario("5c object store down 60 s mid-queue")
def test_object_store_down_for_a_minute_mid_queue_delays_every_job_and_fails_none(
    make_stack: StackFactory, private_s3: PrivateS3, fault_row: FaultRow
) -> None:
    stack = make_stack(**private_s3.env)
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu")
    clip = _clip()
    job_ids = [stack.submit(clip, max_frames=2) for _ in range(6)]
    first = job_ids[0]
    wait_until(lambda: stack.job(first)["status"] == "SUCCEEDED", 300, "the first job (models loaded)")
    private_s3.stop()
    down_at = time.monotonic()
    stages: set[str] = set()
    try:
        while time.monotonic() - down_at < OUTAGE_S:
            rows = stack.sql("SELECT stage FROM jobs WHERE id = ANY(%s::uuid[])", job_ids)
            stages.update(stage for (stage,) in rows)
            time.sleep(1)
    finally:
        private_s3.start()
    back_at = time.monotonic()
    statuses = stack.wait_terminal(job_ids, 600)
    took = time.monotonic() - back_at
    _fill(fault_row, stack, statuses)
    assert set(statuses.values()) == {"SUCCEEDED"}, statuses
    assert {f"uploads/{j}" for j in job_ids} <= private_s3.objects(), "the store came back with its data"
    attempts = _attempts(stack, job_ids)
    assert all(used == 1 for used, _ in attempts.values()), f"the outage used up attempts: {attempts}"
    waited = [j for j, (_, free) in attempts.items() if free]
    assert waited and "waiting_for_storage" in stages, "jobs met the outage and waited for the store"
    log = stack.log("gpu")
    assert all(f"job {j}: object store unavailable" in log for j in waited), "each retry logged with its job id"
    retries = sum(free for _, free in attempts.values())
    fault_row.note = (
        f"{len(waited)} jobs met the outage, {retries} hand-backs with backoff (no attempt used); "
        f"all done {took:.0f} s after the store came back"
    )


@scenario("6c Postgres down 60 s at submission")
def test_postgres_down_for_a_minute_at_submission_refuses_with_503_and_loses_nothing(
    make_stack: StackFactory, private_postgres: PrivatePostgres, fault_row: FaultRow
) -> None:
    # A task time limit long enough for a job caught mid-run to wait out the whole outage in place.
    env = {"VERITY_TASK_TIME_LIMIT_S": "240", "VERITY_LEASE_S": "260", "VERITY_VISIBILITY_TIMEOUT_S": "300"}
    stack = make_stack(private_postgres.url, **env)
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu")
    clip = _clip()
    before = [stack.submit(clip, max_frames=2) for _ in range(3)]
    private_postgres.stop()
    down_at = time.monotonic()
    refused: list[requests.Response] = []
    try:
        while time.monotonic() - down_at < OUTAGE_S:
            refused.append(stack.post_job(clip, max_frames=2))
            time.sleep(2)
    finally:
        private_postgres.start()
    answers = {(r.status_code, (r.json().get("error") or {}).get("code"), "Retry-After" in r.headers) for r in refused}
    assert answers == {(503, "DATABASE_UNAVAILABLE", True)}, answers
    wait_until(lambda: requests.get(f"{stack.base}/readyz", timeout=10).status_code == 200, 60, "readyz back")
    after = [stack.submit(clip, max_frames=2) for _ in range(2)]
    job_ids = before + after
    statuses = stack.wait_terminal(job_ids, 600)
    _fill(fault_row, stack, statuses)
    assert set(statuses.values()) == {"SUCCEEDED"}, statuses
    (accepted,) = stack.sql("SELECT count(*) FROM jobs")[0]
    assert accepted == len(job_ids), "a refused submission left no job behind"
    attempts = _attempts(stack, job_ids)
    assert all(used == 1 for used, _ in attempts.values()), f"the outage used up attempts: {attempts}"
    log = stack.log("gpu")
    waits = log.count("database unavailable")
    assert waits, "the worker met the outage (and waited it out)"
    fault_row.note = (
        f"{len(refused)} submissions during the outage all 503 DATABASE_UNAVAILABLE with Retry-After; "
        f"{len(before)} before and {len(after)} after all SUCCEEDED, one attempt each; "
        f"{waits} database retries logged by the gpu worker"
    )
