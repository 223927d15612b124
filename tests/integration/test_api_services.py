"""The job and feedback services against the real collaborators: Postgres through db.session, the moto S3
server through core.storage, and the real upload checks (api/uploads.py) on a tiny H.264 MP4. The enqueue
function is a recording stand-in: the broker is not what these tests are about.

tests/unit/test_api_services.py covers the same functions over in-memory fakes."""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import select

from api.services.errors import Conflict, Invalid, NotFound, Unavailable
from api.services.feedback import post_feedback
from api.services.jobs import JobRequest, Submitted, cancel_job, submit_job
from api.services.repository import Repository, SqlRepository, sql_unit_of_work
from api.uploads import check_media, inspect_upload
from core.settings import get_settings
from core.storage import ObjectStore, S3Store, get_store
from core.vocabulary import FeedbackCategory, JobStatus, Label
from db.apikeys import Principal, create_key
from db.models import Feedback, Job
from db.session import session_scope
from tests.conftest import Services, insert_job
from tests.support.services import free_port
from tests.support.videos import tiny_mp4


@dataclass(frozen=True)
class People:
    submitter: Principal
    moderator: Principal
    other_tenant: Principal


@pytest.fixture(scope="module")
def people(services: Services) -> People:
    with session_scope() as s:
        made = {
            name: Principal.of(create_key(s, f"services-{name}", tenant, role).record)
            for name, tenant, role in (
                ("submitter", "acme", "submitter"),
                ("moderator", "acme", "moderator"),
                ("other_tenant", "globex", "moderator"),
            )
        }
    return People(**made)


@pytest.fixture
def spool() -> Iterator[Callable[[], IO[bytes]]]:
    """Spooled uploads as the API has them: named files on disk, a new one per request (uploading one to S3
    closes it)."""
    with ExitStack() as files:

        def one() -> IO[bytes]:
            upload = files.enter_context(tempfile.NamedTemporaryFile("w+b", prefix="verity-upload-"))
            upload.write(tiny_mp4(3))
            return upload

        yield one


def request_for(upload: IO[bytes], idempotency_key: str | None = None, max_frames: int | None = None) -> JobRequest:
    return JobRequest(
        file=upload,
        upload=inspect_upload(upload),
        filename="clip.mp4",
        webhook_url="http://127.0.0.1:9/hook",
        max_frames=max_frames,
        sampling="uniform",
        metadata={"case": "services"},
        idempotency_key=idempotency_key,
    )


def submit(
    submitter: Principal,
    request: JobRequest,
    sent: list[str],
    jobs: Callable[[], AbstractContextManager[Repository]] = sql_unit_of_work,
    store: ObjectStore | None = None,
) -> Submitted:
    settings = get_settings()
    return submit_job(
        submitter,
        request,
        jobs=jobs,
        store=store or get_store(),
        enqueue=sent.append,
        check_media=partial(check_media, accepted_codecs=settings.accepted_codecs),
        default_max_frames=settings.max_frames,
        allow_private_webhooks=settings.webhook_allow_private,
    )


def objects(services: Services) -> set[str]:
    store = get_store()
    assert isinstance(store, S3Store)
    pages = store.client.get_paginator("list_objects_v2").paginate(Bucket=services.bucket, Prefix="uploads/")
    return {o["Key"] for page in pages for o in page.get("Contents", [])}


def row(job_id: uuid.UUID) -> Job:
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        return job


def test_a_submission_lands_in_the_bucket_and_the_database(
    people: People, spool: Callable[[], IO[bytes]], tmp_path: Path
) -> None:
    sent: list[str] = []

    submitted = submit(people.submitter, request_for(spool()), sent)

    job = row(submitted.job.id)
    assert not submitted.replayed and sent == [str(job.id)]
    assert (job.status, job.tenant, job.api_key_id, job.content_type) == (
        "QUEUED",
        "acme",
        people.submitter.id,
        "video/mp4",
    )
    assert job.params == {"max_frames": get_settings().max_frames, "sampling": "uniform"}
    assert job.webhook_url == "http://127.0.0.1:9/hook" and job.enqueued_at is not None
    get_store().download_to(job.input_key, tmp_path / "copy.mp4")
    assert (tmp_path / "copy.mp4").read_bytes() == tiny_mp4(3)


def test_an_idempotency_key_replays_through_postgres(people: People, spool: Callable[[], IO[bytes]]) -> None:
    key, sent = f"services-{uuid.uuid4()}", list[str]()

    first = submit(people.submitter, request_for(spool(), key), sent)
    again = submit(people.submitter, request_for(spool(), key), sent)

    assert again.replayed and again.job.id == first.job.id and sent == [str(first.job.id)]
    with pytest.raises(Invalid) as refused:
        submit(people.submitter, request_for(spool(), key, max_frames=3), sent)
    assert refused.value.code == "IDEMPOTENCY_KEY_REUSED"


def test_a_lost_race_is_told_by_the_unique_constraint_and_replays_the_winner(
    people: People, spool: Callable[[], IO[bytes]], services: Services
) -> None:
    key, sent = f"services-{uuid.uuid4()}", list[str]()
    winner = submit(people.submitter, request_for(spool(), key), sent).job
    before = objects(services)
    units = 0

    @contextmanager
    def late_lookup() -> Iterator[Repository]:
        """The first lookup runs before the winner commits: it sees no job, so the insert collides."""
        nonlocal units
        with sql_unit_of_work() as repo:
            units += 1
            if units == 1:
                repo.job_by_idempotency_key = lambda tenant, key: None  # type: ignore[method-assign]
            yield repo

    submitted = submit(people.submitter, request_for(spool(), key), sent, jobs=late_lookup)

    assert submitted.replayed and submitted.job.id == winner.id and sent == [str(winner.id)]
    assert objects(services) == before, "the loser's object was left in the bucket"


def test_a_store_that_is_down_records_no_job(people: People, spool: Callable[[], IO[bytes]]) -> None:
    key, sent = f"services-{uuid.uuid4()}", list[str]()
    down = S3Store("verity-test", f"http://127.0.0.1:{free_port()}", "us-east-1")

    with pytest.raises(Unavailable):
        submit(people.submitter, request_for(spool(), key), sent, store=down)

    with session_scope() as s:
        assert s.scalar(select(Job).where(Job.idempotency_key == key)) is None
    assert not sent


def test_cancel_writes_through_the_session(people: People) -> None:
    running = insert_job("acme", "RUNNING")
    done = insert_job("acme", "SUCCEEDED")

    with session_scope() as s:
        cancel_job(SqlRepository(s), "acme", running)
    with pytest.raises(Conflict), session_scope() as s:
        cancel_job(SqlRepository(s), "acme", done)
    with pytest.raises(NotFound), session_scope() as s:
        cancel_job(SqlRepository(s), "globex", running)

    assert (row(running).status, row(running).stage) == ("CANCELLED", "cancelled")
    assert row(running).finished_at is not None and row(done).status == "SUCCEEDED"


def test_feedback_keeps_one_current_label_per_moderator(people: People) -> None:
    job_id = insert_job("acme", "SUCCEEDED")
    queued = insert_job("acme", "QUEUED")

    for label in (Label.FAKE, Label.REAL):
        with session_scope() as s:
            post_feedback(SqlRepository(s), people.moderator, job_id, label, FeedbackCategory.OTHER, "seen")
    with pytest.raises(Conflict), session_scope() as s:
        post_feedback(SqlRepository(s), people.moderator, queued, Label.FAKE, FeedbackCategory.OTHER, None)
    with pytest.raises(NotFound), session_scope() as s:
        post_feedback(SqlRepository(s), people.other_tenant, job_id, Label.FAKE, FeedbackCategory.OTHER, None)

    with session_scope() as s:
        rows = s.execute(
            select(Feedback.label, Feedback.is_current).where(Feedback.job_id == job_id).order_by(Feedback.id)
        ).all()
        assert not s.scalars(select(Feedback).where(Feedback.job_id == queued)).all()
    assert [tuple(r) for r in rows] == [("FAKE", False), ("REAL", True)]
    assert row(job_id).status == JobStatus.SUCCEEDED
