"""Job routes: submit, inspect, list, cancel, read the result."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import current_key, require_role
from api.errors import ApiError
from api.serialize import job_view, result_view
from api.uploads import display_filename, inspect_upload
from db.models import Job, JobStatus, Result, Role
from db.netguard import UnsafeUrlError, vet_url
from db.queue import enqueue_detect
from db.session import session_scope
from db.settings import Settings
from db.storage import StorageError, get_store

log = logging.getLogger(__name__)
bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")

MAX_FRAMES_LIMIT = 300
# Mirrors workers.pipeline.SAMPLING_STRATEGIES; the API cannot import the torch-side pipeline.
SAMPLING_STRATEGIES = ("uniform", "fixed_rate")


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


def _parse_params() -> dict[str, Any]:
    sampling = request.form.get("sampling", "uniform")
    if sampling not in SAMPLING_STRATEGIES:
        raise ApiError(400, "INVALID_PARAMETER", f"sampling must be one of {', '.join(SAMPLING_STRATEGIES)}")
    raw = request.form.get("max_frames")
    if raw is None:
        return {"max_frames": _settings().max_frames, "sampling": sampling}
    try:
        max_frames = int(raw)
    except ValueError as exc:
        raise ApiError(400, "INVALID_PARAMETER", "max_frames must be an integer") from exc
    if not 1 <= max_frames <= MAX_FRAMES_LIMIT:
        raise ApiError(400, "INVALID_PARAMETER", f"max_frames must be between 1 and {MAX_FRAMES_LIMIT}")
    return {"max_frames": max_frames, "sampling": sampling}


def _parse_metadata() -> dict[str, Any]:
    raw = request.form.get("metadata")
    if not raw:
        return {}
    if len(raw) > 16_384:
        raise ApiError(400, "INVALID_PARAMETER", "metadata must be at most 16 KiB of JSON")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "INVALID_PARAMETER", "metadata must be a JSON object") from exc
    if not isinstance(value, dict):
        raise ApiError(400, "INVALID_PARAMETER", "metadata must be a JSON object")
    return value


def _find_by_idempotency_key(tenant: str, key: str) -> Job | None:
    with session_scope() as session:
        return session.scalar(select(Job).where(Job.tenant == tenant, Job.idempotency_key == key))


def _replay(job: Job) -> Response:
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
def create_job() -> Response:
    key = current_key()
    settings = _settings()
    idempotency_key = request.headers.get("Idempotency-Key")
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise ApiError(400, "INVALID_IDEMPOTENCY_KEY", "Idempotency-Key must be 1 to 255 characters")
    if idempotency_key and (existing := _find_by_idempotency_key(key.tenant, idempotency_key)):
        return _replay(existing)

    upload = request.files.get("file")
    if upload is None:
        raise ApiError(400, "MISSING_FILE", "send the video as a multipart form field named 'file'")
    webhook_url = request.form.get("webhook_url") or None
    if webhook_url:
        try:
            vet_url(webhook_url, allow_private=settings.webhook_allow_private)
        except UnsafeUrlError as exc:
            raise ApiError(422, "INVALID_WEBHOOK_URL", str(exc)) from exc
    params = _parse_params()
    metadata = _parse_metadata()
    sniffed = inspect_upload(upload.stream)

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
        stage="queued",
        input_key=object_key,
        sha256=sniffed.sha256,
        size_bytes=sniffed.size,
        filename=display_filename(upload.filename),
        content_type=sniffed.content_type,
        params=params,
        metadata_=metadata,
        webhook_url=webhook_url,
        idempotency_key=idempotency_key,
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
        return _replay(winner)
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
def get_job(job_id: str) -> Response:
    with session_scope() as session:
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
def list_jobs() -> Response:
    try:
        limit = int(request.args.get("limit", "20"))
    except ValueError as exc:
        raise ApiError(400, "INVALID_PARAMETER", "limit must be an integer") from exc
    if not 1 <= limit <= 100:
        raise ApiError(400, "INVALID_PARAMETER", "limit must be between 1 and 100")
    query = select(Job).where(Job.tenant == current_key().tenant)
    status = request.args.get("status")
    if status:
        if status not in JobStatus.__members__:
            raise ApiError(400, "INVALID_PARAMETER", f"status must be one of {', '.join(JobStatus)}")
        query = query.where(Job.status == status)
    cursor = request.args.get("cursor")
    if cursor:
        created, last_id = _decode_cursor(cursor)
        query = query.where(or_(Job.created_at < created, and_(Job.created_at == created, Job.id < last_id)))
    query = query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)
    with session_scope() as session:
        jobs = list(session.scalars(query))
    page, more = jobs[:limit], len(jobs) > limit
    return jsonify({"jobs": [job_view(j) for j in page], "next_cursor": _encode_cursor(page[-1]) if more else None})


@bp.delete("/<job_id>")
@require_role(Role.SUBMITTER)
def cancel_job(job_id: str) -> Response:
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            # The worker's final write is fenced on status RUNNING, so a cancelled job never gets a result.
            job.status = JobStatus.CANCELLED.value
            job.stage = "cancelled"
            job.finished_at = datetime.now(UTC)
        elif job.status != JobStatus.CANCELLED:
            raise ApiError(409, "JOB_FINISHED", f"the job already finished with status {job.status}")
        return jsonify(job_view(job))


@bp.get("/<job_id>/result")
@require_role(Role.SUBMITTER)
def get_result(job_id: str) -> Response:
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
