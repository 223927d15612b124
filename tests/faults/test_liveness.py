"""The pieces the fault scenarios rely on, each checked directly against Postgres (fast, default suite):
the liveness lock, takeover and the attempt cap in the claim, the reaper's dead-worker rule, the broker-reset
marker, and the worker's retries through a database outage."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from core.results import JobResult, Tracks
from core.settings import Settings
from core.vocabulary import Verdict
from tests.conftest import Services, reset_caches
from tests.support.services import PrivateRedis


def _job(**values: Any) -> uuid.UUID:
    from db.models import Job
    from db.session import session_scope

    job_id = uuid.uuid4()
    fields: dict[str, Any] = {"sha256": "0" * 64, "webhook_url": "http://127.0.0.1:9/hook", **values}
    with session_scope() as s:
        s.add(Job(id=job_id, tenant="liveness", input_key=f"uploads/{job_id}", size_bytes=1, **fields))
    return job_id


def _get(job_id: uuid.UUID) -> Any:
    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        return s.get(Job, job_id)


def _age(job_id: uuid.UUID, seconds: float) -> None:
    """Make the last heartbeat look `seconds` old."""
    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == job_id).values(updated_at=datetime.now(UTC) - timedelta(seconds=seconds)))


@pytest.fixture
def settings(services: Services) -> Settings:
    from core.settings import get_settings

    return dataclasses.replace(get_settings(), heartbeat_interval_s=1.0, max_attempts=3)


def test_a_live_owner_keeps_its_job_and_a_dead_ones_job_is_taken_over_at_once(settings: Settings) -> None:
    from db import jobs, owner_lock

    job_id = _job()
    mine = owner_lock.OwnerLock(job_id)
    assert mine.acquire()
    first = jobs.take(str(job_id), 600, owner_gone=True)
    assert first.claim is not None and first.claim.attempt == 1

    # A redelivered message while the owner lives: the lock is taken, the lease is live -> hands off.
    other = owner_lock.OwnerLock(job_id)
    assert not other.acquire()
    assert jobs.take(str(job_id), 600, owner_gone=False).reason == "owned"

    mine.release()  # what Postgres does when the owner's process is SIGKILLed
    assert other.acquire()
    second = jobs.take(str(job_id), 600, owner_gone=True, max_attempts=3)
    assert second.claim is not None and second.claim.attempt == 2, "taken over with a live lease, no waiting"
    assert jobs.heartbeat(first.claim, "scoring", 0.5, 600) is False, "the old attempt is fenced off"
    other.release()


def test_the_claim_fails_a_job_that_used_up_its_attempts(settings: Settings) -> None:
    from db import jobs
    from db.models import WebhookDelivery
    from db.session import session_scope

    job_id = _job(status="RUNNING", attempt=3, lease_expires_at=datetime.now(UTC) + timedelta(minutes=10))
    taken = jobs.take(str(job_id), 600, owner_gone=True, max_attempts=3)
    assert taken.claim is None and taken.reason == "exhausted" and taken.delivery_id is not None
    job = _get(job_id)
    assert job.status == "FAILED" and job.error_code == "MAX_ATTEMPTS_EXCEEDED" and job.attempt == 3
    with session_scope() as s:
        (delivery,) = s.scalars(select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)).all()
    assert delivery.event == "job.failed" and delivery.payload["data"]["error"]["code"] == "MAX_ATTEMPTS_EXCEEDED"


def test_reaper_hands_back_a_running_job_whose_worker_is_gone_but_not_one_whose_worker_lives(
    own_broker: PrivateRedis, settings: Settings
) -> None:
    # A broker of its own: on the session's, a worker still running from the end-to-end tests could take the
    # re-sent job before its status is read.
    import redis

    from db import owner_lock
    from workers.reaper import reap

    live_lease = datetime.now(UTC) + timedelta(minutes=10)
    dead = _job(status="RUNNING", attempt=1, lease_expires_at=live_lease)
    alive = _job(status="RUNNING", attempt=1, lease_expires_at=live_lease)
    fresh = _job(status="RUNNING", attempt=1, lease_expires_at=live_lease)
    for job_id in (dead, alive):
        _age(job_id, 10)  # ten missed beats
    holder = owner_lock.OwnerLock(alive)
    assert holder.acquire()
    try:
        report = reap(settings)
    finally:
        holder.release()
    assert str(dead) in report.requeued and str(dead) in report.enqueued
    assert _get(dead).status == "QUEUED" and _get(dead).enqueued_at is not None
    assert redis.Redis.from_url(own_broker.url).llen("gpu") >= 1  # other tests may have left queued jobs too
    assert _get(alive).status == "RUNNING", "its worker holds the lock: only slow, not dead"
    assert _get(fresh).status == "RUNNING", "a recent heartbeat: never probed"


@pytest.fixture
def own_broker(services: Services, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path)
    redis.start()
    monkeypatch.setenv("BROKER_URL", redis.url)
    reset_caches()
    try:
        yield redis
    finally:
        redis.kill()
        monkeypatch.setenv("BROKER_URL", services.broker_url)
        reset_caches()


def test_reaper_resends_every_queued_job_when_the_broker_lost_its_data(own_broker: PrivateRedis) -> None:
    import redis

    from core.queue import broker_lost_messages
    from core.settings import get_settings
    from workers.reaper import reap

    settings = get_settings()
    reap(settings)  # writes the marker
    assert broker_lost_messages() is False
    sent = _job(enqueued_at=datetime.now(UTC))  # enqueued a moment ago: normally left alone
    assert str(sent) not in reap(settings).enqueued
    own_broker.restart()  # no persistence: the message and the marker are gone
    report = reap(settings)
    assert report.broker_reset and str(sent) in report.enqueued
    assert redis.Redis.from_url(own_broker.url).llen("gpu") >= 1
    assert reap(settings).broker_reset is False, "once per loss"


def test_with_retry_rides_out_transient_errors_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from db import retry

    monkeypatch.setattr("db.retry.time.sleep", lambda _s: None)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))
        return "ok"

    assert retry.with_retry(flaky, 60, "test") == "ok" and len(calls) == 3
    with pytest.raises(IntegrityError):
        retry.with_retry(lambda: (_ for _ in ()).throw(IntegrityError("x", {}, Exception("dup"))), 60, "test")
    calls.clear()
    with pytest.raises(OperationalError):
        retry.with_retry(flaky, 0, "test")  # no time to wait


def test_a_save_whose_reply_was_lost_is_not_mistaken_for_being_fenced_off(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database commits the final write, then the connection drops before the reply: the retry must see
    its own committed result (and return its webhook), not report the attempt as fenced off."""
    from contextlib import contextmanager

    from db import finish, jobs
    from db.models import Result
    from db.session import session_scope

    job_id = _job()
    claim = jobs.claim(str(job_id), 600)
    assert claim is not None
    dropped: list[bool] = []

    @contextmanager
    def reply_lost_once() -> Iterator[Any]:
        with session_scope() as session:  # the real one: only db.finish's name is replaced below
            yield session
        if not dropped:
            dropped.append(True)
            raise OperationalError("COMMIT", {}, Exception("connection lost after commit"))

    monkeypatch.setattr(finish, "session_scope", reply_lost_once)
    monkeypatch.setattr("db.retry.time.sleep", lambda _s: None)
    result = JobResult(Verdict.REAL, 0.1, 0.1, "weighted_average", None, None, 0, 0, Tracks(0, None, None))
    outcome = finish.complete(claim, result, [], {"type": "job.succeeded"}, retry_s=30)
    assert outcome not in (False, None), "the retry found its own write"
    with session_scope() as s:
        assert len(s.scalars(select(Result).where(Result.job_id == job_id)).all()) == 1


def test_a_claim_during_a_database_outage_goes_back_to_the_queue(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Acking would strand the job QUEUED until the visibility-timeout resend; the message is requeued instead."""
    from celery.exceptions import Reject

    from db import jobs
    from workers import tasks

    def down(*_: Any, **__: Any) -> Any:
        raise OperationalError("UPDATE jobs", {}, Exception("connection refused"))

    monkeypatch.setattr(jobs, "take", down)
    with pytest.raises(Reject) as caught:
        tasks.detect(str(_job()))
    assert caught.value.requeue is True  # type: ignore[attr-defined]  # celery-types' Reject lacks requeue


def test_the_server_drops_a_vanished_clients_locks_within_a_minute(services: Services) -> None:
    """A lost machine sends no FIN; TCP keepalives set per connection bound how long its locks linger."""
    from sqlalchemy import text

    from db.session import get_engine

    with get_engine().connect() as conn:
        idle, interval, count = (
            int(conn.execute(text(f"SHOW tcp_keepalives_{name}")).scalar() or 0)
            for name in ("idle", "interval", "count")
        )
    assert 0 < idle + interval * count <= 60
