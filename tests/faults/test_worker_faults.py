"""Workers dying, hanging and shutting down mid-job: no job lost, no result, inference or webhook doubled.

Real processes (gunicorn, Celery prefork workers, beat) on a private Redis and a fresh database; the short
fake clip with max_frames=4 spends a few seconds in face detection, where the faults are injected.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import shared_file
from tests.faults.conftest import FaultRow, StackFactory, scenario
from tests.support.services import wait_until
from tests.support.stack import FAST_ENV, Stack, duplicated
from tests.support.videos import CLIP

pytestmark = pytest.mark.slow

MID_INFERENCE = ("detecting_faces", "scoring")


def _clip() -> bytes:
    return shared_file(CLIP).read_bytes()


def _settle(stack: Stack, job_ids: list[str], row: FaultRow, timeout_s: float = 240) -> dict[str, str]:
    """Wait for every job to finish, then fill the row and check each had exactly one effect."""
    statuses = stack.wait_terminal(job_ids, timeout_s)
    time.sleep(3)  # a duplicate webhook or a late stale write would land now, if there were one
    audit = stack.audit(job_ids)
    row.jobs = len(job_ids)
    row.completed = sum(s in ("SUCCEEDED", "FAILED", "CANCELLED") for s in statuses.values())
    row.lost = row.jobs - row.completed
    row.duplicated = duplicated(audit)
    assert row.lost == 0, statuses
    assert row.duplicated == 0, audit
    return statuses


def _one_verified_hook(stack: Stack, job_id: str) -> dict[str, object]:
    hooks = wait_until(lambda: stack.receiver.for_job(job_id), 30, f"the webhook of {job_id}")
    assert len({h["headers"]["webhook-id"] for h in hooks}) == 1, hooks
    secret = stack.env["VERITY_WEBHOOK_SECRET"]
    return Webhook(secret).verify(hooks[-1]["body"], hooks[-1]["headers"])  # type: ignore[no-any-return]


@scenario("1 gpu child SIGKILL mid-inference")
def test_child_killed_mid_inference_is_redelivered_and_completes(make_stack: StackFactory, fault_row: FaultRow) -> None:
    stack = make_stack()
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu")
    job_id = stack.submit(_clip())
    stack.wait_stage(job_id, MID_INFERENCE)
    (child,) = stack.children("gpu")
    os.kill(child, signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: stack.job(job_id)["attempt"] == 2, 60, "attempt 2")
    taken_over = time.monotonic() - killed_at

    statuses = _settle(stack, [job_id], fault_row)
    took = time.monotonic() - killed_at
    assert statuses[job_id] == "SUCCEEDED"
    job = stack.job(job_id)
    assert job["attempt"] == 2, "the redelivered message took the job over as attempt 2"
    assert stack.sql("SELECT attempt FROM results WHERE job_id = %s", job_id) == [(2,)]
    assert _one_verified_hook(stack, job_id)["type"] == "job.succeeded"
    # Redelivered straight away (reject_on_worker_lost + the freed liveness lock), not after the lease.
    assert taken_over < 10, taken_over
    assert "WorkerLostError" in stack.log("gpu")
    # The freed lock told one of two paths that the worker was gone, whichever came first: the redelivered
    # message taking the job over, or the reaper handing it back (when the heartbeat was already late, e.g.
    # during the first job's model load).
    assert "takes over from attempt 1 (its worker is gone)" in stack.log("gpu") or (
        f"job {job_id} attempt 1: its worker is gone; handing it back" in stack.log("io")
    )
    fault_row.note = f"attempt 2 claimed {taken_over:.1f} s and finished {took:.1f} s after the kill"


def _holder(stack: Stack, job_id: str, names: tuple[str, ...]) -> str:
    """Which worker claimed the job. Not merely the first whose log names it: with a short visibility timeout the
    other worker receives a duplicate of the message while the holder is still working on it."""
    claimed = f"job {job_id} claimed as attempt"
    return str(wait_until(lambda: next((n for n in names if claimed in stack.log(n)), None), 30, f"{job_id}'s worker"))


@scenario("2 whole gpu worker SIGKILL mid-job")
def test_whole_worker_killed_another_completes_within_lease_and_reaper(
    make_stack: StackFactory, fault_row: FaultRow
) -> None:
    stack = make_stack()
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu-a")
    stack.start_worker("gpu-b")
    job_id = stack.submit(_clip())
    stack.wait_stage(job_id, MID_INFERENCE)
    victim = _holder(stack, job_id, ("gpu-a", "gpu-b"))
    survivor = "gpu-b" if victim == "gpu-a" else "gpu-a"
    stack.kill_group(victim)  # the main process and its pool child, like a lost machine or container
    killed_at = time.monotonic()
    wait_until(lambda: stack.job(job_id)["attempt"] == 2, 120, "attempt 2")
    taken_over = time.monotonic() - killed_at

    statuses = _settle(stack, [job_id], fault_row)
    assert statuses[job_id] == "SUCCEEDED"
    bound = int(FAST_ENV["VERITY_LEASE_S"]) + int(FAST_ENV["VERITY_REAPER_INTERVAL_S"])
    assert taken_over <= bound, (taken_over, bound)
    assert job_id in stack.log(survivor) and "its worker is gone" in stack.log("io")
    assert stack.sql("SELECT attempt FROM results WHERE job_id = %s", job_id) == [(2,)]
    _one_verified_hook(stack, job_id)
    fault_row.note = f"{survivor} took it over {taken_over:.1f} s after the kill (bound: lease + reaper = {bound} s)"


@scenario("3 duplicate delivery (visibility 2 s) + stale attempt")
def test_duplicate_delivery_and_a_stale_attempt_cannot_write(make_stack: StackFactory, fault_row: FaultRow) -> None:
    # The broker's visibility timeout is forced to 2 s (tests/faults/misconfigured_app.py), far below the run
    # time, so every running task's message is redelivered to the other worker. Worker A is then frozen
    # (SIGSTOP) mid-inference until its lease runs out, B takes the job over as attempt 2 and finishes it,
    # and A is resumed: its attempt 1 is stale and must not write anything.
    env = {"VERITY_TASK_TIME_LIMIT_S": "45", "VERITY_LEASE_S": "50", "VERITY_VISIBILITY_TIMEOUT_S": "60"}
    stack = make_stack(**env)
    app = "tests.faults.misconfigured_app"
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu-a", app=app)
    warm_a = stack.submit(_clip())  # loads A's models, so the real job's run is inference only
    stack.wait_stage(warm_a, MID_INFERENCE)
    warm_b = stack.submit(_clip())  # A is busy (prefetch 1), so this one waits for B
    stack.start_worker("gpu-b", app=app)
    assert set(stack.wait_terminal([warm_a, warm_b], 180).values()) == {"SUCCEEDED"}

    job_id = stack.submit(_clip())
    stack.wait_stage(job_id, MID_INFERENCE)
    a = _holder(stack, job_id, ("gpu-a", "gpu-b"))
    b = "gpu-b" if a == "gpu-a" else "gpu-a"
    stack.kill_group(a, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        # The redelivered copy reaches B while A still holds the job: B must leave it alone.
        wait_until(lambda: f"{job_id} is not claimable: owned" in stack.log(b), 60, "the duplicate to be refused")
        assert stack.job(job_id)["attempt"] == 1
        # A's lease runs out; the reaper hands the job back and B finishes it as attempt 2.
        assert stack.wait_terminal([job_id], 180)[job_id] == "SUCCEEDED"
        assert stack.job(job_id)["attempt"] == 2
    finally:
        stack.kill_group(a, signal.SIGCONT)
    frozen = time.monotonic() - stopped_at
    wait_until(
        lambda: f"attempt 1 lost job {job_id}" in stack.log(a) or f"{job_id} attempt 1 lost its claim" in stack.log(a),
        120,
        "the stale attempt to find itself fenced off",
    )
    _settle(stack, [warm_a, warm_b, job_id], fault_row)
    assert stack.sql("SELECT attempt FROM results WHERE job_id = %s", job_id) == [(2,)]
    _one_verified_hook(stack, job_id)
    fault_row.note = f"A frozen {frozen:.0f} s; duplicate refused while A held the job; A's attempt 1 fenced off"


@scenario("8a SIGTERM (warm shutdown) mid-job")
def test_warm_shutdown_finishes_the_running_job(make_stack: StackFactory, fault_row: FaultRow) -> None:
    stack = make_stack()
    stack.start_worker("io", queues="io", beat=True)
    worker = stack.start_worker("gpu")
    job_id = stack.submit(_clip())
    stack.wait_stage(job_id, MID_INFERENCE)
    os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(timeout=120) == 0, "a warm shutdown waits for the task and exits cleanly"
    statuses = _settle(stack, [job_id], fault_row, timeout_s=30)
    assert statuses[job_id] == "SUCCEEDED" and stack.job(job_id)["attempt"] == 1
    _one_verified_hook(stack, job_id)
    fault_row.note = "finished by the stopping worker before it exited"


@scenario("8b SIGTERM then cold shutdown mid-job")
def test_cold_shutdown_hands_the_job_back(make_stack: StackFactory, fault_row: FaultRow) -> None:
    stack = make_stack()
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu-a")
    stack.start_worker("gpu-b")
    job_id = stack.submit(_clip())
    stack.wait_stage(job_id, MID_INFERENCE)
    victim = _holder(stack, job_id, ("gpu-a", "gpu-b"))
    proc = stack.procs[victim]
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGQUIT)  # the supervisor lost patience: cold shutdown, the task is cut off
    proc.wait(timeout=120)
    statuses = _settle(stack, [job_id], fault_row)
    assert statuses[job_id] == "SUCCEEDED"
    attempt = stack.job(job_id)["attempt"]
    _one_verified_hook(stack, job_id)
    fault_row.note = f"handed back and finished as attempt {attempt}"


@scenario("6b poison job: max attempts -> FAILED + job.failed")
def test_a_job_whose_worker_keeps_dying_fails_with_a_code_and_a_webhook(
    make_stack: StackFactory, fault_row: FaultRow
) -> None:
    stack = make_stack(VERITY_MAX_ATTEMPTS="2")
    stack.start_worker("io", queues="io", beat=True)
    stack.start_worker("gpu")
    job_id = stack.submit(_clip())
    for attempt in (1, 2):

        def reached(a: int = attempt) -> bool:
            return bool(stack.job(job_id)["attempt"] == a)

        wait_until(reached, 120, f"attempt {attempt}")
        stack.wait_stage(job_id, MID_INFERENCE)
        (child,) = stack.children("gpu")
        os.kill(child, signal.SIGKILL)  # e.g. the kernel's OOM killer, every time
    statuses = _settle(stack, [job_id], fault_row)
    assert statuses[job_id] == "FAILED"
    job = stack.job(job_id)
    assert job["error_code"] == "MAX_ATTEMPTS_EXCEEDED" and job["attempt"] == 2
    assert stack.sql("SELECT count(*) FROM results WHERE job_id = %s", job_id) == [(0,)]
    payload = _one_verified_hook(stack, job_id)
    assert payload["type"] == "job.failed"
    assert payload["data"]["error"]["code"] == "MAX_ATTEMPTS_EXCEEDED"  # type: ignore[index]
    fault_row.note = "2 attempts killed -> FAILED MAX_ATTEMPTS_EXCEEDED, job.failed delivered"
