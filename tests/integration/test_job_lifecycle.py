"""Claim, fencing and the reaper against real Postgres and Redis (no worker process needed)."""

from __future__ import annotations

import logging
import sys
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import func, select, update

from tests.conftest import Services
from tests.support.results import MINIMAL_RESULT

if TYPE_CHECKING:
    from db.models import Job


def _new_job(**values: object) -> str:
    from db.models import Job
    from db.session import session_scope

    job_id = uuid.uuid4()
    fields: dict[str, object] = {"sha256": "0" * 64, "webhook_url": "http://127.0.0.1:9/hook", **values}
    with session_scope() as s:
        s.add(Job(id=job_id, tenant="lifecycle", input_key=f"uploads/{job_id}", size_bytes=1, **fields))
    return str(job_id)


def _job(job_id: str) -> Job:
    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        job = s.get(Job, uuid.UUID(job_id))
    assert job is not None, job_id
    return job


def test_a_job_is_claimed_once_and_only_the_current_attempt_writes(services: Services) -> None:
    from db import finish, jobs
    from db.models import Result
    from db.session import session_scope

    job_id = _new_job()
    first = jobs.claim(job_id, lease_s=60)
    assert first is not None and first.attempt == 1
    assert jobs.claim(job_id, lease_s=60) is None, "a live lease cannot be claimed again"

    # The lease runs out (the worker hung); a redelivered message takes over with attempt 2.
    from db.models import Job

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == first.job_id).values(lease_expires_at=datetime.now(UTC) - timedelta(1)))
    second = jobs.claim(job_id, lease_s=60)
    assert second is not None and second.attempt == 2

    assert jobs.heartbeat(first, "scoring", 0.5, 60) is False
    assert finish.complete(first, MINIMAL_RESULT, [], {}) is False, "the stale attempt is fenced off"
    assert finish.complete(second, MINIMAL_RESULT, [], {"type": "job.succeeded"}) is not False
    assert finish.complete(second, MINIMAL_RESULT, [], {}) is False, "a result is written once"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Result).where(Result.job_id == second.job_id)) == 1
    job = _job(job_id)
    assert job.status == "SUCCEEDED" and job.attempt == 2


def test_reaper_requeues_expired_leases_and_fails_after_max_attempts(services: Services) -> None:
    from core.settings import get_settings
    from db.models import WebhookDelivery
    from db.session import session_scope
    from workers.reaper import reap

    settings = get_settings()
    expired = datetime.now(UTC) - timedelta(seconds=5)
    retry = _new_job(status="RUNNING", attempt=1, lease_expires_at=expired)
    give_up = _new_job(status="RUNNING", attempt=settings.max_attempts, lease_expires_at=expired)
    never_sent = _new_job(updated_at=datetime.now(UTC) - timedelta(minutes=5))

    report = reap(settings)
    assert retry in report.enqueued and never_sent in report.enqueued
    assert give_up in report.failed
    assert _job(retry).status == "QUEUED" and _job(retry).enqueued_at is not None
    failed = _job(give_up)
    assert failed.status == "FAILED" and failed.error_code == "MAX_ATTEMPTS_EXCEEDED"
    with session_scope() as s:
        events = s.scalars(select(WebhookDelivery.event).where(WebhookDelivery.job_id == failed.id)).all()
    assert events == ["job.failed"]


@pytest.mark.parametrize("status", ["SUCCEEDED", "CANCELLED"])
def test_finished_jobs_are_never_claimed(services: Services, status: str) -> None:
    from db import jobs

    assert jobs.claim(_new_job(status=status), lease_s=60) is None


def test_known_content_label_comes_from_the_same_tenant_only(services: Services) -> None:
    from db import jobs
    from db.models import Feedback
    from db.session import session_scope

    digest = uuid.uuid4().hex * 2
    labelled = _new_job(status="SUCCEEDED", sha256=digest)
    from db.apikeys import create_key

    with session_scope() as s:
        key_id = create_key(s, "mod", "lifecycle", "moderator").record.id
        s.add(
            Feedback(
                job_id=uuid.UUID(labelled),
                api_key_id=key_id,
                tenant="lifecycle",
                label="FAKE",
                category="FALSE_NEGATIVE",
            )
        )
    same = jobs.claim(_new_job(sha256=digest), lease_s=60)
    assert same is not None and jobs.known_label(same) == "FAKE"
    other = _new_job(sha256=digest)
    from db.models import Job

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(other)).values(tenant="someone-else"))
    foreign = jobs.claim(other, lease_s=60)
    assert foreign is not None and jobs.known_label(foreign) is None


# --- outages: an object store that fails a job's first downloads delays the job, it does not fail it ------


@dataclass(frozen=True)
class _Config:
    max_frames: int = 2
    sampling: str = "uniform"


def _fake_pipeline(monkeypatch: pytest.MonkeyPatch, runs: list[str]) -> SimpleNamespace:
    """Stand-ins for the torch-heavy modules `_process` imports at call time; `runs` gets each input run on."""

    def run_pipeline(path: Path, *_: object, **__: object) -> SimpleNamespace:
        runs.append(path.read_text())
        return SimpleNamespace(result=MINIMAL_RESULT, frame_rows=[])

    resources = SimpleNamespace(config=_Config(), faces=None, pack=None)
    monkeypatch.setitem(sys.modules, "workers.resources", SimpleNamespace(get_resources=lambda: resources))
    pipeline = SimpleNamespace(run_pipeline=run_pipeline, pack_fusion_spec=lambda _pack: None)
    monkeypatch.setitem(sys.modules, "workers.pipeline", pipeline)
    return pipeline


@pytest.fixture
def worker(services: Services, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """`detect` run in this process on the real database, with a store whose first `fail_first` downloads fail
    as if it were down; a re-enqueued job is recorded (with its countdown) instead of sent."""
    from core.settings import get_settings
    from core.storage import S3Store, StorageError
    from workers import calibration_cache, tasks

    state = SimpleNamespace(
        settings=replace(get_settings(), max_attempts=3, outage_retry_budget_s=60.0, outage_max_backoff_s=5.0),
        fail_first=0,
        downloads=0,
        sent=[],
        runs=[],
    )
    state.pipeline = _fake_pipeline(monkeypatch, state.runs)

    def download_to(_store: S3Store, key: str, dest: Path) -> None:
        state.downloads += 1
        if state.downloads <= state.fail_first:
            raise StorageError(f"download of {key!r} failed: Could not connect to the endpoint URL")
        dest.write_text(key)

    def apply_async(args: list[str], countdown: float, queue: str) -> None:
        state.sent.append((args[0], countdown, queue))

    monkeypatch.setattr(S3Store, "download_to", download_to)
    monkeypatch.setattr(tasks, "get_settings", lambda: state.settings)
    monkeypatch.setattr(tasks.detect, "apply_async", apply_async)
    monkeypatch.setattr(calibration_cache, "active", lambda: None)
    return state


def _deliver_until_done(worker: SimpleNamespace, job_id: str, most: int) -> list[float]:
    """Run the job's message, then each message the worker re-sent, as the broker would; the countdowns."""
    from workers import tasks

    tasks.detect(job_id)
    countdowns: list[float] = []
    while worker.sent and len(countdowns) < most:
        sent_id, countdown, queue = worker.sent.pop(0)
        assert (sent_id, queue) == (job_id, "gpu")
        countdowns.append(countdown)
        tasks.detect(job_id)
    return countdowns


def test_a_store_outage_delays_a_job_without_using_its_attempts(
    worker: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    from db.models import Result, WebhookDelivery
    from db.session import session_scope

    worker.fail_first = 5  # more failed downloads than VERITY_MAX_ATTEMPTS (3): each used to cost an attempt
    job_id = _new_job()
    with caplog.at_level(logging.WARNING, logger="workers.tasks"):
        countdowns = _deliver_until_done(worker, job_id, most=10)

    job = _job(job_id)
    assert job.status == "SUCCEEDED", (job.status, job.error_code, job.error_message)
    assert len(countdowns) == 5 and all(1.0 <= c <= worker.settings.outage_max_backoff_s for c in countdowns)
    assert worker.runs == [f"uploads/{job_id}"], "inference ran once, on the input that finally downloaded"
    # Every claim bumped the fencing token; only the one that ran counts as an attempt.
    assert (job.attempt, job.outage_retries, job.outage_since) == (6, 5, None)
    retries = [r for r in caplog.records if r.levelno == logging.WARNING and "object store unavailable" in r.message]
    assert len(retries) == 5 and all(job_id in r.getMessage() for r in retries)
    with session_scope() as s:
        assert s.scalars(select(Result.attempt).where(Result.job_id == job.id)).all() == [6]
        events = s.scalars(select(WebhookDelivery.event).where(WebhookDelivery.job_id == job.id)).all()
    assert events == ["job.succeeded"]


def test_a_store_outage_longer_than_the_budget_fails_the_job_storage_unavailable(worker: SimpleNamespace) -> None:
    from db import jobs
    from db.models import Job, WebhookDelivery
    from db.session import session_scope
    from workers import tasks

    worker.fail_first = 1000
    job_id = _new_job()
    tasks.detect(job_id)
    parked = _job(job_id)
    assert (parked.status, parked.stage, parked.outage_retries) == ("QUEUED", "waiting_for_storage", 1)
    assert parked.outage_since is not None and len(worker.sent) == 1
    # The outage has now lasted longer than the budget (as if the store stayed down for its whole length).
    budget = worker.settings.outage_retry_budget_s
    with session_scope() as s:
        s.execute(
            update(Job)
            .where(Job.id == parked.id)
            .values(outage_since=datetime.now(UTC) - timedelta(seconds=budget + 1))
        )
    tasks.detect(job_id)

    job = _job(job_id)
    assert (job.status, job.error_code) == ("FAILED", "STORAGE_UNAVAILABLE")
    assert "VERITY_OUTAGE_RETRY_BUDGET_S" in (job.error_message or "")
    assert jobs.attempts_used(job.attempt, job.outage_retries) == 1, "only the claim that gave up counts"
    assert len(worker.sent) == 1, "not sent again"
    with session_scope() as s:
        events = s.scalars(select(WebhookDelivery.event).where(WebhookDelivery.job_id == job.id)).all()
    assert events == ["job.failed"]


def test_a_missing_input_fails_at_once_and_a_job_s_own_faults_still_use_attempts(worker: SimpleNamespace) -> None:
    from core.storage import ObjectMissing, S3Store
    from workers import tasks

    def gone(_store: S3Store, key: str, _dest: Path) -> None:
        raise ObjectMissing(f"download of {key!r} failed: Not Found")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(S3Store, "download_to", gone)
        missing = _new_job()
        tasks.detect(missing)
    job = _job(missing)
    assert (job.status, job.error_code, job.attempt) == ("FAILED", "INPUT_MISSING", 1)
    assert not worker.sent

    # A crash is the job's own fault: it is retried, each try using an attempt, and fails after the last.
    def crash(*_: object, **__: object) -> None:
        raise RuntimeError("model exploded")

    worker.pipeline.run_pipeline = crash
    crashing = _new_job()
    countdowns = _deliver_until_done(worker, crashing, most=10)
    job = _job(crashing)
    assert (job.status, job.error_code) == ("FAILED", "PROCESSING_ERROR")
    assert (job.attempt, job.outage_retries) == (3, 0) and countdowns == [10, 20]
