"""The job and feedback services over in-memory fakes: a repository of rows, an object store, an enqueue list.

Pure: no database, no broker, no network (webhook URLs are IP literals, vetted without DNS), no video (the
media probe is a stand-in; tests/integration/test_api_services.py runs these against the real services).
"""

from __future__ import annotations

import hashlib
import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

import pytest

from api.services.errors import Conflict, Invalid, NotFound, Unavailable
from api.services.feedback import post_feedback
from api.services.jobs import JobRequest, SniffedUpload, Submitted, cancel_job, submit_job
from api.services.repository import DuplicateJob, Repository
from core.storage import ObjectMissing, StorageError
from core.vocabulary import FeedbackCategory, JobStatus, Label
from db.apikeys import Principal
from db.models import Feedback, Job

ALICE = Principal(id=1, name="alice", tenant="acme", role="submitter", prefix="vk_alice")
MOD = Principal(id=2, name="mod", tenant="acme", role="moderator", prefix="vk_mod")
OTHER_MOD = Principal(id=3, name="mod2", tenant="acme", role="moderator", prefix="vk_mod2")
GLOBEX = Principal(id=4, name="eve", tenant="globex", role="moderator", prefix="vk_eve")
CLIP = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 52


class FakeRepository:
    """Rows in dicts; a write is visible at once (the services never read their own uncommitted writes)."""

    def __init__(self) -> None:
        self.jobs: dict[uuid.UUID, Job] = {}
        self.feedback: list[Feedback] = []
        # A job another request commits just before ours: add_job stores it and refuses ours, as a lost race.
        self.rival: Job | None = None

    def get_job(self, tenant: str, job_id: uuid.UUID) -> Job | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.tenant == tenant else None

    def job_by_idempotency_key(self, tenant: str, key: str) -> Job | None:
        return next((j for j in self.jobs.values() if j.tenant == tenant and j.idempotency_key == key), None)

    def add_job(self, job: Job) -> None:
        if self.rival is not None:
            self.jobs[self.rival.id] = self.rival
        if job.idempotency_key and self.job_by_idempotency_key(job.tenant, job.idempotency_key):
            raise DuplicateJob("uq_jobs_tenant_idempotency_key")
        self.jobs[job.id] = job

    def mark_enqueued(self, job_id: uuid.UUID) -> None:
        self.jobs[job_id].enqueued_at = datetime.now(UTC)

    def use_upload(self, tenant: str, upload_id: uuid.UUID, job_id: uuid.UUID) -> bool:
        return False  # these tests submit files, never a presigned upload

    def supersede_feedback(self, job_id: uuid.UUID, api_key_id: int) -> None:
        for row in self.feedback:
            if row.job_id == job_id and row.api_key_id == api_key_id:
                row.is_current = False

    def settle_batch(self, job_id: uuid.UUID) -> None:
        pass  # no batches in these tests

    def add_feedback(self, feedback: Feedback) -> None:
        # What the INSERT's defaults would set.
        feedback.id = len(self.feedback) + 1
        feedback.is_current = True
        feedback.created_at = datetime.now(UTC)
        self.feedback.append(feedback)


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[str, tuple[bytes, str | None]] = {}
        self.down = False

    def put_stream(self, key: str, stream: IO[bytes], content_type: str | None = None) -> None:
        if self.down:
            raise StorageError("connection refused")
        self.objects[key] = (stream.read(), content_type)

    def download_to(self, key: str, dest: Path) -> None:
        if key not in self.objects:
            raise ObjectMissing(key)
        dest.write_bytes(self.objects[key][0])

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)

    def check(self) -> None:
        if self.down:
            raise StorageError("connection refused")


class World:
    """The collaborators of one test, and submit_job wired to them."""

    def __init__(self) -> None:
        self.repo = FakeRepository()
        self.store = FakeStore()
        self.sent: list[str] = []
        self.probed = 0
        self.broker_down = False
        self.media_refusal: Invalid | None = None

    @contextmanager
    def unit_of_work(self) -> Iterator[Repository]:
        yield self.repo

    def enqueue(self, job_id: str) -> None:
        if self.broker_down:
            raise ConnectionError("broker unreachable")
        self.sent.append(job_id)

    def check_media(self, stream: IO[bytes]) -> None:
        self.probed += 1
        if self.media_refusal is not None:
            raise self.media_refusal

    def submit(self, request: JobRequest, submitter: Principal = ALICE, allow_private: bool = False) -> Submitted:
        return submit_job(
            submitter,
            request,
            jobs=self.unit_of_work,
            store=self.store,
            enqueue=self.enqueue,
            check_media=self.check_media,
            default_max_frames=32,
            allow_private_webhooks=allow_private,
        )


def job_request(content: bytes = CLIP, **fields: object) -> JobRequest:
    values: dict[str, object] = {
        "file": io.BytesIO(content),
        "upload": SniffedUpload(len(content), hashlib.sha256(content).hexdigest(), "video/mp4"),
        "filename": "clip.mp4",
        "webhook_url": None,
        "max_frames": None,
        "sampling": "uniform",
        "metadata": None,
        "idempotency_key": None,
        **fields,
    }
    return JobRequest(**values)  # type: ignore[arg-type]


def stored_job(status: JobStatus, tenant: str = "acme", **values: object) -> Job:
    return Job(id=uuid.uuid4(), tenant=tenant, status=status.value, stage=status.value.lower(), **values)


@pytest.fixture
def world() -> World:
    return World()


def test_a_submission_is_stored_recorded_and_enqueued(world: World) -> None:
    submitted = world.submit(job_request(metadata={"case": 7}, filename="a.mp4"))

    job = submitted.job
    assert not submitted.replayed
    assert world.repo.jobs == {job.id: job}
    assert (job.status, job.stage, job.tenant, job.api_key_id) == ("QUEUED", "queued", "acme", ALICE.id)
    assert job.input_key == f"uploads/{job.id}" and world.store.objects[job.input_key] == (CLIP, "video/mp4")
    assert (job.sha256, job.size_bytes, job.filename) == (hashlib.sha256(CLIP).hexdigest(), len(CLIP), "a.mp4")
    assert job.params == {"max_frames": 32, "sampling": "uniform"} and job.metadata_ == {"case": 7}
    assert world.sent == [str(job.id)] and job.enqueued_at is not None


def test_the_same_request_with_an_idempotency_key_replays_the_first_job(world: World) -> None:
    first = world.submit(job_request(idempotency_key="k1", max_frames=8))
    # The client's filename is for display only: not part of what makes two requests the same.
    again = world.submit(job_request(idempotency_key="k1", max_frames=8, filename="renamed.mp4"))

    assert again == Submitted(first.job, replayed=True)
    assert len(world.store.objects) == 1 and world.sent == [str(first.job.id)] and world.probed == 1


@pytest.mark.parametrize(
    "change",
    [{"content": CLIP + b"x"}, {"max_frames": 9}, {"sampling": "fixed_rate"}, {"metadata": {"a": 1}}],
    ids=["file", "max_frames", "sampling", "metadata"],
)
def test_a_reused_idempotency_key_with_another_request_is_refused(world: World, change: dict[str, object]) -> None:
    first = world.submit(job_request(idempotency_key="k1"))
    content = change.pop("content", CLIP)
    assert isinstance(content, bytes)

    with pytest.raises(Invalid) as refused:
        world.submit(job_request(content, idempotency_key="k1", **change))

    assert refused.value.code == "IDEMPOTENCY_KEY_REUSED" and str(first.job.id) in refused.value.message
    assert len(world.store.objects) == 1 and len(world.repo.jobs) == 1


def test_a_job_from_before_fingerprints_replays_for_any_request(world: World) -> None:
    old = stored_job(JobStatus.SUCCEEDED, idempotency_key="k1", request_fingerprint=None)
    world.repo.jobs[old.id] = old

    assert world.submit(job_request(idempotency_key="k1")) == Submitted(old, replayed=True)


def test_idempotency_keys_are_per_tenant(world: World) -> None:
    theirs = world.submit(job_request(idempotency_key="k1"), submitter=GLOBEX)
    ours = world.submit(job_request(idempotency_key="k1"))

    assert not ours.replayed and ours.job.id != theirs.job.id


def test_an_unsafe_webhook_url_is_refused_before_the_probe_and_the_store(world: World) -> None:
    with pytest.raises(Invalid) as refused:
        world.submit(job_request(webhook_url="http://127.0.0.1:9/hook"))

    assert refused.value.code == "INVALID_WEBHOOK_URL" and "loopback" in refused.value.message
    assert world.probed == 0 and not world.store.objects and not world.repo.jobs


def test_a_private_webhook_url_is_kept_where_allowed_and_an_empty_one_is_none(world: World) -> None:
    kept = world.submit(job_request(webhook_url="http://127.0.0.1:9/hook"), allow_private=True)
    empty = world.submit(job_request(webhook_url=""))

    assert kept.job.webhook_url == "http://127.0.0.1:9/hook" and empty.job.webhook_url is None


def test_media_the_probe_refuses_is_never_stored(world: World) -> None:
    world.media_refusal = Invalid("VIDEO_TOO_LONG", "too long")

    with pytest.raises(Invalid, match="too long"):
        world.submit(job_request())

    assert not world.store.objects and not world.repo.jobs and not world.sent


def test_a_store_outage_is_unavailable_and_records_nothing(world: World) -> None:
    world.store.down = True

    with pytest.raises(Unavailable) as refused:
        world.submit(job_request())

    assert refused.value.code == "STORAGE_UNAVAILABLE"
    assert not world.repo.jobs and not world.sent


def test_a_lost_idempotency_race_drops_our_object_and_replays_the_winner(world: World) -> None:
    winner = world.submit(job_request(idempotency_key="k1")).job
    del world.repo.jobs[winner.id]  # not yet committed when our lookup runs
    world.repo.rival = winner

    submitted = world.submit(job_request(idempotency_key="k1"))

    assert submitted == Submitted(winner, replayed=True)
    assert list(world.store.objects) == [winner.input_key] and world.sent == [str(winner.id)]


def test_a_failed_insert_drops_the_object_and_raises(world: World) -> None:
    def broken(job: Job) -> None:
        raise RuntimeError("database gone")

    world.repo.add_job = broken  # type: ignore[method-assign]

    with pytest.raises(RuntimeError, match="database gone"):
        world.submit(job_request())

    assert not world.store.objects and not world.sent


def test_a_broker_outage_leaves_the_job_queued_for_the_reaper(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.broker_down = True

    job = world.submit(job_request()).job

    assert world.repo.jobs[job.id].status == "QUEUED" and job.enqueued_at is None
    assert "the reaper will retry" in caplog.text


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING])
def test_cancel_stops_a_queued_or_running_job(world: World, status: JobStatus) -> None:
    job = stored_job(status)
    world.repo.jobs[job.id] = job

    cancelled = cancel_job(world.repo, "acme", job.id)

    assert cancelled is job and (job.status, job.stage) == ("CANCELLED", "cancelled")
    assert job.finished_at is not None


def test_cancelling_a_cancelled_job_changes_nothing(world: World) -> None:
    finished = datetime(2024, 1, 1, tzinfo=UTC)
    job = stored_job(JobStatus.CANCELLED, finished_at=finished)
    world.repo.jobs[job.id] = job

    assert cancel_job(world.repo, "acme", job.id).finished_at == finished


@pytest.mark.parametrize("status", [JobStatus.SUCCEEDED, JobStatus.FAILED])
def test_a_finished_job_cannot_be_cancelled(world: World, status: JobStatus) -> None:
    job = stored_job(status)
    world.repo.jobs[job.id] = job

    with pytest.raises(Conflict) as refused:
        cancel_job(world.repo, "acme", job.id)

    assert refused.value.code == "JOB_FINISHED" and job.status == status.value


def test_an_open_stream_is_closed_through_its_stream_not_cancelled(world: World) -> None:
    job = stored_job(JobStatus.STREAMING)
    world.repo.jobs[job.id] = job

    with pytest.raises(Conflict) as refused:
        cancel_job(world.repo, "acme", job.id)

    assert refused.value.code == "STREAM_OPEN" and f"DELETE /v1/streams/{job.id}" in refused.value.message
    assert job.status == JobStatus.STREAMING.value


def test_another_tenants_job_is_not_found(world: World) -> None:
    job = stored_job(JobStatus.SUCCEEDED, tenant="globex")
    world.repo.jobs[job.id] = job
    calls: list[Callable[[], object]] = [
        lambda: cancel_job(world.repo, "acme", job.id),
        lambda: post_feedback(world.repo, MOD, job.id, Label.FAKE, FeedbackCategory.OTHER, None),
        lambda: cancel_job(world.repo, "acme", uuid.uuid4()),
    ]

    for call in calls:
        with pytest.raises(NotFound, match="no such job"):
            call()
    assert job.status == "SUCCEEDED" and not world.repo.feedback


def test_feedback_replaces_the_moderators_label_and_keeps_history(world: World) -> None:
    job = stored_job(JobStatus.SUCCEEDED)
    world.repo.jobs[job.id] = job

    first = post_feedback(world.repo, MOD, job.id, Label.FAKE, FeedbackCategory.FALSE_NEGATIVE, "lips")
    colleague = post_feedback(world.repo, OTHER_MOD, job.id, Label.FAKE, FeedbackCategory.CONFIRMATION, None)
    second = post_feedback(world.repo, MOD, job.id, Label.REAL, FeedbackCategory.OTHER, None)

    assert (second.label, second.category, second.note, second.tenant) == ("REAL", "OTHER", None, "acme")
    assert (first.is_current, colleague.is_current, second.is_current) == (False, True, True)
    assert (first.note, first.api_key_id, second.api_key_id) == ("lips", MOD.id, MOD.id)


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.FAILED, JobStatus.CANCELLED])
def test_feedback_needs_a_finished_result(world: World, status: JobStatus) -> None:
    job = stored_job(status)
    world.repo.jobs[job.id] = job

    with pytest.raises(Conflict) as refused:
        post_feedback(world.repo, MOD, job.id, Label.REAL, FeedbackCategory.OTHER, None)

    assert refused.value.code == "RESULT_NOT_READY" and status.value in refused.value.message
    assert not world.repo.feedback
