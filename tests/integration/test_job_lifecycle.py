"""Claim, fencing and the reaper against real Postgres and Redis (no worker process needed)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from tests.conftest import Services


def _new_job(**values: object) -> str:
    from db.models import Job
    from db.session import session_scope

    job_id = uuid.uuid4()
    fields: dict[str, object] = {"sha256": "0" * 64, "webhook_url": "http://127.0.0.1:9/hook", **values}
    with session_scope() as s:
        s.add(Job(id=job_id, tenant="lifecycle", input_key=f"uploads/{job_id}", size_bytes=1, **fields))
    return str(job_id)


def _job(job_id: str):
    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        return s.get(Job, uuid.UUID(job_id))


RESULT = {
    "verdict": "REAL",
    "score": 0.1,
    "raw_score": 0.1,
    "method": "weighted_average",
    "t_low": 0.3,
    "t_high": 0.7,
    "model_pack": "test@1",
}


def test_a_job_is_claimed_once_and_only_the_current_attempt_writes(services: Services) -> None:
    from db.models import Result
    from db.session import session_scope
    from workers import job_store

    job_id = _new_job()
    first = job_store.claim(job_id, lease_s=60)
    assert first is not None and first.attempt == 1
    assert job_store.claim(job_id, lease_s=60) is None, "a live lease cannot be claimed again"

    # The lease runs out (the worker hung); a redelivered message takes over with attempt 2.
    from db.models import Job

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == first.job_id).values(lease_expires_at=datetime.now(UTC) - timedelta(1)))
    second = job_store.claim(job_id, lease_s=60)
    assert second is not None and second.attempt == 2

    assert job_store.heartbeat(first, "scoring", 0.5, 60) is False
    assert job_store.complete(first, RESULT, [], {}) is False, "the stale attempt is fenced off"
    assert job_store.complete(second, RESULT, [], {"type": "job.succeeded"}) is not False
    assert job_store.complete(second, RESULT, [], {}) is False, "a result is written once"
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Result).where(Result.job_id == second.job_id)) == 1
    job = _job(job_id)
    assert job.status == "SUCCEEDED" and job.attempt == 2


def test_reaper_requeues_expired_leases_and_fails_after_max_attempts(services: Services) -> None:
    from db.models import WebhookDelivery
    from db.session import session_scope
    from db.settings import get_settings
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
    from workers import job_store

    assert job_store.claim(_new_job(status=status), lease_s=60) is None


def test_known_content_label_comes_from_the_same_tenant_only(services: Services) -> None:
    from db.models import Feedback
    from db.session import session_scope
    from workers import job_store

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
    same = job_store.claim(_new_job(sha256=digest), lease_s=60)
    assert same is not None and job_store.known_label(same) == "FAKE"
    other = _new_job(sha256=digest)
    from db.models import Job

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(other)).values(tenant="someone-else"))
    foreign = job_store.claim(other, lease_s=60)
    assert foreign is not None and job_store.known_label(foreign) is None
