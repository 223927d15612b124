"""Batch routes: submit several files at once (one job each), poll the batch."""

from __future__ import annotations

import uuid
from functools import partial
from typing import Any

from flask import Blueprint, Response, jsonify, request

from api.auth import current_key, require_role
from api.batch_schemas import BatchForm, BatchView
from api.errors import ApiError, service_errors
from api.jobs import _settings
from api.openapi import responses, spec
from api.schemas import JobHeaders
from api.serialize import iso
from api.services import batches as service
from api.services.jobs import JobRequest
from api.services.repository import SqlRepository, sql_unit_of_work
from api.uploads import check_media, display_filename, inspect_upload
from core.queue import enqueue_detect
from core.storage import get_store
from core.vocabulary import Role
from db.session import read_scope

bp = Blueprint("batches", __name__, url_prefix="/v1/batches")


def _batch_view(state: service.BatchState) -> dict[str, Any]:
    batch = state.batch
    items = [
        {
            "job_id": str(job.id),
            "filename": job.filename,
            "status": job.status,
            "verdict": result.verdict if result is not None else None,
            "score": result.score if result is not None else None,
            "error": job.error_code,
            "links": {"self": f"/v1/jobs/{job.id}", "result": f"/v1/jobs/{job.id}/result"},
        }
        for job, result in state.items
    ]
    return {
        "id": str(batch.id),
        "status": state.summary.status.value,
        "total": state.summary.total,
        "counts": state.summary.counts,
        "items": items,
        "webhook_url": batch.webhook_url,
        "per_item_webhooks": batch.per_item_webhooks,
        "idempotency_key": batch.idempotency_key,
        "created_at": iso(batch.created_at),
        "completed_at": iso(batch.completed_at),
        "links": {"self": f"/v1/batches/{batch.id}"},
    }


def _state(batch_id: uuid.UUID) -> service.BatchState:
    with service_errors(), read_scope() as session:
        return service.batch_state(SqlRepository(session), current_key().tenant, batch_id)


@bp.post("")
@require_role(Role.SUBMITTER)
@spec.validate(
    form=BatchForm,
    headers=JobHeaders,
    resp=responses(
        {202: BatchView, 200: BatchView},
        413,
        415,
        422,
        headers={
            202: {"Location": "The batch's URL."},
            200: {"Idempotent-Replayed": "true: the batch first created with this Idempotency-Key."},
        },
    ),
    tags=["batches"],
)
def create_batch() -> Response:
    """Submit several files at once: one job per file part, all with the same options.

    Each file is checked as POST /v1/jobs checks one (413, 415, 422) and one refusal refuses the whole batch
    before anything is stored; more than VERITY_MAX_BATCH_ITEMS files is 422 TOO_MANY_ITEMS, and the whole
    request is held to VERITY_MAX_UPLOAD_BYTES. Returns 202 with the QUEUED batch; poll it, read each item's
    result at its job's routes. webhook_url gets one batch.completed event once every item ended (listed with the
    webhooks of the item that ended last); per_item_webhooks=true also sends each item's job events there.
    Idempotency-Key as for jobs: the same key and request replay the batch (200), another request with the same
    key is 422 IDEMPOTENCY_KEY_REUSED. Role: submitter."""
    settings = _settings()
    form: BatchForm | None = request.context.form  # type: ignore[attr-defined]
    if form is None:  # an empty body (api/boundary.py refuses any other non-multipart one with 415)
        raise ApiError(400, "MISSING_FILE", "send each file as a multipart part named 'file'")
    headers: JobHeaders = request.context.headers  # type: ignore[attr-defined]
    with service_errors():
        items = [
            JobRequest(
                file=upload.stream,
                upload=inspect_upload(upload.stream),
                filename=display_filename(upload.filename),
                webhook_url=None,
                max_frames=form.max_frames,
                sampling=form.sampling,
                metadata=form.metadata,
                idempotency_key=None,
            )
            for upload in form.file
        ]
        batch_request = service.BatchRequest(items, form.webhook_url, form.per_item_webhooks, headers.idempotency_key)
        submitted = service.submit_batch(
            current_key(),
            batch_request,
            batches=sql_unit_of_work,
            store=get_store(),
            enqueue=enqueue_detect,
            check_media=partial(check_media, accepted_codecs=settings.accepted_codecs),
            default_max_frames=settings.max_frames,
            allow_private_webhooks=settings.webhook_allow_private,
            max_items=settings.max_batch_items,
        )
    response = jsonify(_batch_view(_state(submitted.batch.id)))
    if submitted.replayed:
        response.status_code = 200
        response.headers["Idempotent-Replayed"] = "true"
    else:
        response.status_code = 202
        response.headers["Location"] = f"/v1/batches/{submitted.batch.id}"
    return response


@bp.get("/<batch_id>")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: BatchView}, 404), tags=["batches"])
def get_batch(batch_id: str) -> Response:
    """A batch of the caller's tenant: its status, item counts per status, and each item's job id, status,
    verdict and score, with links to the item's job and result. Role: submitter."""
    try:
        bid = uuid.UUID(batch_id)
    except ValueError as exc:
        raise ApiError(404, "NOT_FOUND", "no such batch") from exc
    return jsonify(_batch_view(_state(bid)))
