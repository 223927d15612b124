"""Job routes: submit, inspect, list, cancel, read the result."""

from __future__ import annotations

import base64
import json
import uuid
from contextlib import ExitStack
from datetime import datetime
from functools import partial
from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from api.auth import current_key, require_role
from api.errors import ApiError, service_errors
from api.openapi import responses, spec
from api.presigned import read_back
from api.schemas import JobForm, JobHeaders, JobList, JobListQuery, JobView, JobWithResult, ResultView
from api.serialize import job_view, result_view
from api.services import jobs as service
from api.services import waiting
from api.services.repository import SqlRepository, sql_unit_of_work
from api.uploads import check_media, display_filename, inspect_upload
from core.queue import enqueue_detect
from core.settings import Settings
from core.storage import get_store
from core.vocabulary import TERMINAL_STATUSES, JobStatus, Role
from db.models import Job, Result
from db.session import read_scope, session_scope

bp = Blueprint("jobs", __name__, url_prefix="/v1/jobs")


# The HTTP status of each kind of refusal a service raises.
def _settings() -> Settings:
    settings: Settings = current_app.config["VERITY_SETTINGS"]
    return settings


def _parse_job_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise ApiError(404, "NOT_FOUND", "no such job") from exc


def _tenant_job(session: Session, raw_id: str) -> Job:
    """The caller's tenant's job; another tenant's is a 404 like a missing one."""
    with service_errors():
        return service.tenant_job(SqlRepository(session), current_key().tenant, _parse_job_id(raw_id))


def _job_request(form: JobForm, headers: JobHeaders, settings: Settings, stack: ExitStack) -> service.JobRequest:
    """The submission from its one source: the multipart file, a presigned upload read back (both checked as an
    upload), or a source URL the worker fetches (only its form is checked here)."""
    upload_id, file = None, form.file.stream if form.file else None  # werkzeug spools a large part to disk
    if form.upload_id:
        upload_id, file = stack.enter_context(read_back(current_key().tenant, form.upload_id, headers.idempotency_key))
    return service.JobRequest(
        file=file,
        upload=inspect_upload(file) if file else None,
        filename=display_filename(form.file.filename) if form.file else None,
        webhook_url=form.webhook_url,
        max_frames=form.max_frames,
        sampling=form.sampling,
        metadata=form.metadata,
        idempotency_key=headers.idempotency_key,
        source_url=service.vet_source(form.source_url, settings.source_allow_private) if form.source_url else None,
        upload_id=upload_id,
        explain=form.explain,
    )


@bp.post("")
@require_role(Role.SUBMITTER)
@spec.validate(
    form=JobForm,
    headers=JobHeaders,
    resp=responses(
        {202: JobView, 200: JobWithResult},
        404,
        409,
        413,
        415,
        422,
        headers={
            202: {"Location": "The job's URL."},
            200: {
                "Idempotent-Replayed": "true: the job first created with this Idempotency-Key (else `wait` saw "
                "the job end)."
            },
        },
    ),
    tags=["jobs"],
)
def create_job() -> Response:
    """Submit a video for detection: the multipart part ``file``, or instead a ``source_url`` field (the worker
    fetches it: public http(s) addresses only, within the size cap and VERITY_SOURCE_TIMEOUT_S; a source it cannot
    fetch fails the job with SOURCE_UNREACHABLE, SOURCE_TOO_LARGE, SOURCE_TIMEOUT or SOURCE_REFUSED), or an
    ``upload_id`` from POST /v1/uploads (checked like a file; UPLOAD_NOT_FOUND 404, UPLOAD_EMPTY 400, UPLOAD_USED
    409, UPLOAD_EXPIRED 422, UPLOAD_TOO_LARGE 413).

    Checked before anything is stored: the file's size (413, while streaming), the magic bytes (415), then the
    container metadata — resolution, duration, frame count — without decoding (422). Returns 202 with the
    QUEUED job, or 200 with the existing job when the Idempotency-Key was seen before with the same file and
    form fields (422 IDEMPOTENCY_KEY_REUSED with different ones). With ``wait`` (seconds, cut to VERITY_MAX_WAIT_S)
    the request holds until the job ends or that time passes: 200 with the job and its result (null unless it
    SUCCEEDED) if it ended, else the usual 202. Role: submitter."""
    settings = _settings()
    form: JobForm | None = request.context.form  # type: ignore[attr-defined]
    if form is None or sum(bool(v) for v in (form.file, form.source_url, form.upload_id)) != 1:
        # An empty body too (api/boundary.py refuses any other non-multipart one with 415).
        raise ApiError(
            400,
            "MISSING_FILE",
            "send exactly one of: the video as the multipart part 'file', a source_url field, or an upload_id field",
        )
    headers: JobHeaders = request.context.headers  # type: ignore[attr-defined]
    with service_errors(), ExitStack() as stack:
        job_request = _job_request(form, headers, settings, stack)
        submitted = service.submit_job(
            current_key(),
            job_request,
            jobs=sql_unit_of_work,
            store=get_store(),
            enqueue=enqueue_detect,
            check_media=partial(check_media, accepted_codecs=settings.accepted_codecs),
            default_max_frames=settings.max_frames,
            allow_private_webhooks=settings.webhook_allow_private,
        )
    job, ended = submitted.job, False
    if form.wait is not None:
        job = waiting.until_terminal(partial(_reload, job.id), min(form.wait, settings.max_wait_s))
        ended = job.status in TERMINAL_STATUSES
    response = jsonify({**job_view(job), "result": _result_of(job)} if ended else job_view(job))
    response.status_code = 200 if submitted.replayed or ended else 202
    if submitted.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    else:
        response.headers["Location"] = f"/v1/jobs/{job.id}"
    return response


def _reload(job_id: uuid.UUID) -> Job:
    with read_scope() as session:
        return session.scalars(select(Job).where(Job.id == job_id)).one()


def _result_of(job: Job) -> dict[str, Any] | None:
    with read_scope() as session:
        result = session.scalar(select(Result).where(Result.job_id == job.id))
        return result_view(result) if result is not None else None


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
    jid = _parse_job_id(job_id)
    with service_errors(), session_scope() as session:
        # Serialised before the commit, as it always was: updated_at is the value read, not the commit's.
        return jsonify(job_view(service.cancel_job(SqlRepository(session), current_key().tenant, jid)))


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
