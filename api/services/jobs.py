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
from api.services.uploads import upload_object_key
from core.netguard import UnsafeUrlError, check_url_form, vet_url
from core.storage import ObjectStore, StorageError
from core.vocabulary import JobStatus, Stage, UploadError
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
    """A submission as the route parsed it: the spooled file (or a presigned upload read back), already sniffed, or
    a source URL for the worker to fetch; and the form fields as validated."""

    file: IO[bytes] | None  # None: a source_url job
    upload: SniffedUpload | None
    filename: str | None  # for display only: never part of a key, a path or the fingerprint
    webhook_url: str | None
    max_frames: int | None
    sampling: str
    metadata: dict[str, Any] | None
    idempotency_key: str | None
    source_url: str | None = None
    # The presigned upload the file was read back from: the job uses its object where it is, and uses it up.
    upload_id: uuid.UUID | None = None
    explain: bool | None = None  # heatmaps wanted; None: the deployment's default, decided by the worker

    def fingerprint(self) -> str:
        """What makes two submissions the same request: the file's content and the form fields."""
        fields: dict[str, Any] = {
            "file_sha256": self.upload.sha256 if self.upload else None,
            "webhook_url": self.webhook_url,
            "max_frames": self.max_frames,
            "sampling": self.sampling,
            "metadata": self.metadata,
        }
        # Only when set, so the fingerprints of jobs made before these fields existed still match.
        if self.source_url:
            fields["source_url"] = self.source_url
        if self.upload_id:
            fields["upload_id"] = str(self.upload_id)
        if self.explain is not None:
            fields["explain"] = self.explain
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


def vet_webhook(url: str | None, allow_private: bool) -> str | None:
    """The webhook URL (None for none), refused when it is not a safe http(s) target."""
    if url:
        try:
            vet_url(url, allow_private=allow_private)
        except UnsafeUrlError as exc:
            raise Invalid("INVALID_WEBHOOK_URL", str(exc)) from exc
    return url or None


def vet_source(url: str, allow_private: bool) -> str:
    """A source URL's form, without resolving it (the worker vets every address it connects to): http(s), no
    credentials, no private IP literal."""
    try:
        check_url_form(url, allow_private=allow_private, what="source URL")
    except UnsafeUrlError as exc:
        raise Invalid("INVALID_SOURCE_URL", str(exc)) from exc
    return url


def store_upload(store: ObjectStore, request: JobRequest, job_id: uuid.UUID) -> str:
    """Put the spooled upload in the object store under the job's key; a store that is down is Unavailable.
    A presigned upload stays where it was PUT; a source_url job's key is where the worker will store the fetch."""
    if request.upload_id is not None:
        return upload_object_key(request.upload_id)
    object_key = f"uploads/{job_id}"
    if request.file is None or request.upload is None:
        return object_key
    try:
        store.put_stream(object_key, request.file, request.upload.content_type)
    except StorageError as exc:
        log.error("storage failed for %s: %s", object_key, exc)
        raise Unavailable("STORAGE_UNAVAILABLE", "the object store is unavailable; retry later") from exc
    return object_key


def new_job(
    submitter: Principal, request: JobRequest, store: ObjectStore, webhook_url: str | None, default_max_frames: int
) -> Job:
    """Store the upload and return its QUEUED job row (not yet added to any session)."""
    job_id = uuid.uuid4()
    object_key = store_upload(store, request, job_id)
    return Job(
        id=job_id,
        tenant=submitter.tenant,
        api_key_id=submitter.id,
        status=JobStatus.QUEUED.value,
        stage=Stage.QUEUED,
        input_key=object_key,
        sha256=request.upload.sha256 if request.upload else None,
        size_bytes=request.upload.size if request.upload else None,
        filename=request.filename,
        content_type=request.upload.content_type if request.upload else None,
        source_url=request.source_url,
        params={
            "max_frames": request.max_frames or default_max_frames,
            "sampling": request.sampling,
            **({} if request.explain is None else {"explain": request.explain}),
        },
        metadata_=request.metadata or {},
        webhook_url=webhook_url,
        idempotency_key=request.idempotency_key,
        request_fingerprint=request.fingerprint(),
    )


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

    webhook_url = vet_webhook(request.webhook_url, allow_private_webhooks)
    if request.file is not None:
        check_media(request.file)
    job = new_job(submitter, request, store, webhook_url, default_max_frames)
    # A presigned upload's object is the client's until a job has used it up: never deleted here.
    object_key = job.input_key if request.upload_id is None else None
    try:
        with jobs() as repo:
            repo.add_job(job)
            if request.upload_id is not None and not repo.use_upload(submitter.tenant, request.upload_id, job.id):
                raise Conflict(UploadError.USED, "this upload was already used by another job; make a new one")
    except DuplicateJob:
        # Lost an idempotency race: keep the winner's job and object, drop ours.
        if object_key:
            store.delete(object_key)
        winner = _by_idempotency_key(jobs, submitter.tenant, key) if key else None
        if winner is None:
            raise
        return _replay(winner, fingerprint)
    except Exception:
        if object_key:
            store.delete(object_key)
        raise
    try_enqueue(job.id, jobs, enqueue)
    return Submitted(job, replayed=False)


def try_enqueue(job_id: uuid.UUID, jobs: UnitOfWork, enqueue: Callable[[str], None]) -> None:
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
        repo.settle_batch(job.id)  # its batch.completed, if it was the last open item, goes out through the relay
    elif job.status == JobStatus.STREAMING:
        raise Conflict("STREAM_OPEN", f"job {job.id} is an open live stream: close it with DELETE /v1/streams/{job.id}")
    elif job.status != JobStatus.CANCELLED:
        raise Conflict("JOB_FINISHED", f"the job already finished with status {job.status}")
    return job
