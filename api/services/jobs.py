"""Submitting and cancelling jobs."""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from api.services.errors import Conflict, Invalid, NotFound, Unavailable
from api.services.repository import DuplicateJob, Repository, UnitOfWork
from core.netguard import UnsafeUrlError, vet_url
from core.storage import ObjectStore, StorageError
from core.vocabulary import JobStatus, Stage
from db.apikeys import Principal
from db.models import Job

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SniffedUpload:
    """What the upload's bytes say, read once before anything is stored."""

    size: int
    sha256: str
    content_type: str


@dataclass(frozen=True)
class JobRequest:
    """A submission as the route parsed it: the spooled file, already sniffed, and the form fields as validated."""

    file: IO[bytes]
    upload: SniffedUpload
    filename: str | None  # for display only: never part of a key, a path or the fingerprint
    webhook_url: str | None
    max_frames: int | None
    sampling: str
    metadata: dict[str, Any] | None
    idempotency_key: str | None

    def fingerprint(self) -> str:
        """What makes two submissions the same request: the file's content and the form fields."""
        fields = {
            "file_sha256": self.upload.sha256,
            "webhook_url": self.webhook_url,
            "max_frames": self.max_frames,
            "sampling": self.sampling,
            "metadata": self.metadata,
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class Submitted:
    job: Job
    # True: the job an earlier request with this Idempotency-Key made, returned instead of a new one.
    replayed: bool


def tenant_job(repo: Repository, tenant: str, job_id: uuid.UUID) -> Job:
    """Another tenant's job is indistinguishable from a missing one."""
    job = repo.get_job(tenant, job_id)
    if job is None:
        raise NotFound("NOT_FOUND", "no such job")
    return job


def _replay(job: Job, fingerprint: str) -> Submitted:
    """The job an Idempotency-Key made, if this is the same request (IETF draft-ietf-httpapi-idempotency-key-header:
    a key reused with a different request is refused). Rows from before fingerprints were stored replay as before."""
    if job.request_fingerprint not in (None, fingerprint):
        raise Invalid(
            "IDEMPOTENCY_KEY_REUSED",
            f"this Idempotency-Key was used for job {job.id} with a different file or form fields; use a new key",
        )
    return Submitted(job, replayed=True)


def _by_idempotency_key(jobs: UnitOfWork, tenant: str, key: str) -> Job | None:
    with jobs() as repo:
        return repo.job_by_idempotency_key(tenant, key)


def submit_job(
    submitter: Principal,
    request: JobRequest,
    *,
    jobs: UnitOfWork,
    store: ObjectStore,
    enqueue: Callable[[str], None],
    check_media: Callable[[IO[bytes]], None],
    default_max_frames: int,
    allow_private_webhooks: bool,
) -> Submitted:
    """Store the upload, record a QUEUED job and enqueue it, or return the job this Idempotency-Key made.

    The order is the API's contract: the idempotent replay, then the webhook URL, then the media probe
    (``check_media``, which raises a ServiceError), then the store; a store that is down is Unavailable."""
    fingerprint = request.fingerprint()
    key = request.idempotency_key
    if key and (existing := _by_idempotency_key(jobs, submitter.tenant, key)):
        return _replay(existing, fingerprint)

    webhook_url = request.webhook_url or None
    if webhook_url:
        try:
            vet_url(webhook_url, allow_private=allow_private_webhooks)
        except UnsafeUrlError as exc:
            raise Invalid("INVALID_WEBHOOK_URL", str(exc)) from exc
    check_media(request.file)

    job_id = uuid.uuid4()
    object_key = f"uploads/{job_id}"
    try:
        store.put_stream(object_key, request.file, request.upload.content_type)
    except StorageError as exc:
        log.error("storage failed for job %s: %s", job_id, exc)
        raise Unavailable("STORAGE_UNAVAILABLE", "the object store is unavailable; retry later") from exc

    job = Job(
        id=job_id,
        tenant=submitter.tenant,
        api_key_id=submitter.id,
        status=JobStatus.QUEUED.value,
        stage=Stage.QUEUED,
        input_key=object_key,
        sha256=request.upload.sha256,
        size_bytes=request.upload.size,
        filename=request.filename,
        content_type=request.upload.content_type,
        params={"max_frames": request.max_frames or default_max_frames, "sampling": request.sampling},
        metadata_=request.metadata or {},
        webhook_url=webhook_url,
        idempotency_key=key,
        request_fingerprint=fingerprint,
    )
    try:
        with jobs() as repo:
            repo.add_job(job)
    except DuplicateJob:
        # Lost an idempotency race: keep the winner's job and object, drop ours.
        store.delete(object_key)
        winner = _by_idempotency_key(jobs, submitter.tenant, key) if key else None
        if winner is None:
            raise
        return _replay(winner, fingerprint)
    except Exception:
        store.delete(object_key)
        raise
    _try_enqueue(job_id, jobs, enqueue)
    return Submitted(job, replayed=False)


def _try_enqueue(job_id: uuid.UUID, jobs: UnitOfWork, enqueue: Callable[[str], None]) -> None:
    """After commit: a broker outage leaves the job QUEUED with no enqueued_at; the reaper sends it later."""
    try:
        enqueue(str(job_id))
    except Exception as exc:
        log.warning("could not enqueue job %s, the reaper will retry: %s", job_id, exc)
        return
    with jobs() as repo:
        repo.mark_enqueued(job_id)


def cancel_job(repo: Repository, tenant: str, job_id: uuid.UUID) -> Job:
    """Cancel a QUEUED or RUNNING job; a cancelled one is returned as it is, a finished one is a Conflict."""
    job = tenant_job(repo, tenant, job_id)
    if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
        # The worker's final write is fenced on status RUNNING, so a cancelled job never gets a result.
        job.status = JobStatus.CANCELLED.value
        job.stage = Stage.CANCELLED
        job.finished_at = datetime.now(UTC)
    elif job.status != JobStatus.CANCELLED:
        raise Conflict("JOB_FINISHED", f"the job already finished with status {job.status}")
    return job
