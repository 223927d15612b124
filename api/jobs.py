"""Job routes: submit, inspect, list, cancel, read the result."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import uuid
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import current_key, require_role
from api.errors import ApiError
from api.openapi import responses, spec
from api.schemas import JobForm, JobHeaders, JobList, JobListQuery, JobView, ResultView
from api.serialize import job_view, result_view
from api.uploads import check_media, display_filename, inspect_upload
from core.netguard import UnsafeUrlError, vet_url
from core.queue import enqueue_detect
from core.settings import Settings
from core.storage import StorageError, get_store
from core.vocabulary import JobStatus, Role, Stage
from db.models import Job, Result
from db.session import read_scope, session_scope

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


def _settings() -> Settings:
    settings: Settings = current_app.config["VERITY_SETTINGS"]
    return settings


def _parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise ApiError(404, "NOT_FOUND", "no such job") from exc


def _tenant_job(session: Session, raw_id: str) -> Job:
    """Another tenant's job is indistinguishable from a missing one."""
    job = session.scalar(select(Job).where(Job.id == _parse_job_id(raw_id), Job.tenant == current_key().tenant))
    if job is None:
        raise ApiError(404, "NOT_FOUND", "no such job")
    return job


def _find_by_idempotency_key(tenant: str, key: str) -> Job | None:
    with session_scope() as session:
        return session.scalar(select(Job).where(Job.tenant == tenant, Job.idempotency_key == key))


def _fingerprint(form: JobForm, file_sha256: str) -> str:
    """What makes two submissions the same request: the file's content and the form fields as validated (the
    client's filename is display-only and not part of it)."""
    fields = {
        "file_sha256": file_sha256,
        "webhook_url": form.webhook_url,
        "max_frames": form.max_frames,
        "sampling": form.sampling,
        "metadata": form.metadata,
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _replay(job: Job, fingerprint: str) -> Response:
    """The job an Idempotency-Key made, if this is the same request (IETF draft-ietf-httpapi-idempotency-key-header:
    a key reused with a different request is 422). Rows from before fingerprints were stored replay as before."""
    if job.request_fingerprint not in (None, fingerprint):
        raise ApiError(
            422,
            "IDEMPOTENCY_KEY_REUSED",
            f"this Idempotency-Key was used for job {job.id} with a different file or form fields; use a new key",
        )
    response = jsonify(job_view(job))
    response.status_code = 200
    response.headers["Idempotent-Replayed"] = "true"
    return response


def _try_enqueue(job_id: uuid.UUID) -> None:
    """After commit: a broker outage leaves the job QUEUED with no enqueued_at; the reaper sends it later."""
    try:
        enqueue_detect(str(job_id))
    except Exception as exc:
        log.warning("could not enqueue job %s, the reaper will retry: %s", job_id, exc)
        return
    with session_scope() as session:
        session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=datetime.now(UTC)))


@bp.post("")
@require_role(Role.SUBMITTER)
@spec.validate(
    form=JobForm,
    headers=JobHeaders,
    resp=responses(
        {202: JobView, 200: JobView},
        413,
        415,
        422,
        headers={
            202: {"Location": "The job's URL."},
            200: {"Idempotent-Replayed": "true: the job first created with this Idempotency-Key."},
        },
    ),
    tags=["jobs"],
)
def create_job() -> Response:
    """Submit a video for detection.

    Checked before anything is stored: the file's size (413, while streaming), the magic bytes (415), then the
    container metadata — resolution, duration, frame count — without decoding (422). Returns 202 with the
    QUEUED job, or 200 with the existing job when the Idempotency-Key was seen before with the same file and
    form fields (422 IDEMPOTENCY_KEY_REUSED with different ones). Role: submitter."""
    key = current_key()
    settings = _settings()
    form: JobForm | None = request.context.form  # type: ignore[attr-defined]
    if form is None:  # an empty body (api/boundary.py refuses any other non-multipart one with 415)
        raise ApiError(400, "MISSING_FILE", "send the video as a multipart form field named 'file'")
    upload = form.file
    sniffed = inspect_upload(upload.stream)
    fingerprint = _fingerprint(form, sniffed.sha256)
    idempotency_key = request.context.headers.idempotency_key  # type: ignore[attr-defined]
    if idempotency_key and (existing := _find_by_idempotency_key(key.tenant, idempotency_key)):
        return _replay(existing, fingerprint)

    webhook_url = form.webhook_url or None
    if webhook_url:
        try:
            vet_url(webhook_url, allow_private=settings.webhook_allow_private)
        except UnsafeUrlError as exc:
            raise ApiError(422, "INVALID_WEBHOOK_URL", str(exc)) from exc
    params = {"max_frames": form.max_frames or settings.max_frames, "sampling": form.sampling}
    check_media(upload, settings.accepted_codecs)

    job_id = uuid.uuid4()
    object_key = f"uploads/{job_id}"
    store = get_store()
    try:
        # werkzeug spools a large multipart body to a temporary file, never to memory whole.
        store.put_stream(object_key, upload.stream, sniffed.content_type)
    except StorageError as exc:
        log.error("storage failed for job %s: %s", job_id, exc)
        raise ApiError(
            503, "STORAGE_UNAVAILABLE", "the object store is unavailable; retry later", {"Retry-After": "5"}
        ) from exc

    job = Job(
        id=job_id,
        tenant=key.tenant,
        api_key_id=key.id,
        status=JobStatus.QUEUED.value,
        stage=Stage.QUEUED,
        input_key=object_key,
        sha256=sniffed.sha256,
        size_bytes=sniffed.size,
        filename=display_filename(upload.filename),
        content_type=sniffed.content_type,
        params=params,
        metadata_=form.metadata or {},
        webhook_url=webhook_url,
        idempotency_key=idempotency_key,
        request_fingerprint=fingerprint,
    )
    try:
        with session_scope() as session:
            session.add(job)
    except IntegrityError:
        # Lost an idempotency race: keep the winner's job and object, drop ours.
        store.delete(object_key)
        winner = _find_by_idempotency_key(key.tenant, idempotency_key or "")
        if winner is None:
            raise
        return _replay(winner, fingerprint)
    except Exception:
        store.delete(object_key)
        raise
    _try_enqueue(job_id)
    response = jsonify(job_view(job))
    response.status_code = 202
    response.headers["Location"] = f"/v1/jobs/{job_id}"
    return response


@bp.get("/<job_id>")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: JobView}, 404), tags=["jobs"])
def get_job(job_id: str) -> Response:
    """A job of the caller's tenant: status, stage and progress. Role: submitter."""
    with read_scope() as session:
        return jsonify(job_view(_tenant_job(session, job_id)))


def _encode_cursor(job: Job) -> str:
    raw = json.dumps([job.created_at.isoformat(), str(job.id)]).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(created), uuid.UUID(job_id)
    except (ValueError, TypeError) as exc:
        raise ApiError(400, "INVALID_CURSOR", "the cursor is not one this API returned") from exc


@bp.get("")
@require_role(Role.SUBMITTER)
@spec.validate(query=JobListQuery, resp=responses({200: JobList}), tags=["jobs"])
def list_jobs() -> Response:
    """The tenant's jobs, newest first, a page at a time (follow next_cursor). Role: submitter."""
    args: JobListQuery = request.context.query  # type: ignore[attr-defined]
    limit = args.limit
    query = select(Job).where(Job.tenant == current_key().tenant)
    if args.status:
        query = query.where(Job.status == args.status.value)
    if args.cursor:
        created, last_id = _decode_cursor(args.cursor)
        query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    with read_scope() as session:
        jobs = list(session.scalars(query))
    page, more = jobs[:limit], len(jobs) > limit
    return jsonify({"jobs": [job_view(j) for j in page], "next_cursor": _encode_cursor(page[-1]) if more else None})


@bp.delete("/<job_id>")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: JobView}, 404, 409), tags=["jobs"])
def cancel_job(job_id: str) -> Response:
    """Cancel a QUEUED or RUNNING job (idempotent for a cancelled one; 409 once it finished). Role: submitter."""
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            # The worker's final write is fenced on status RUNNING, so a cancelled job never gets a result.
            job.status = JobStatus.CANCELLED.value
            job.stage = Stage.CANCELLED
            job.finished_at = datetime.now(UTC)
        elif job.status != JobStatus.CANCELLED:
            raise ApiError(409, "JOB_FINISHED", f"the job already finished with status {job.status}")
        return jsonify(job_view(job))


@bp.get("/<job_id>/result")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: ResultView}, 404, 409), tags=["jobs"])
def get_result(job_id: str) -> Response:
    """The verdict, calibrated score, thresholds, per-model and per-track detail (409 until SUCCEEDED).
    Role: submitter."""
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        if job.status != JobStatus.SUCCEEDED:
            if job.status == JobStatus.FAILED:
                raise ApiError(409, "JOB_FAILED", f"the job failed: {job.error_code}: {job.error_message}")
            raise ApiError(409, "RESULT_NOT_READY", f"the job is {job.status}; poll /v1/jobs/{job.id}")
        result = session.scalar(select(Result).where(Result.job_id == job.id))
        if result is None:
            raise ApiError(409, "RESULT_NOT_READY", "the result is not stored yet")
        return jsonify(result_view(result))
