"""Presigned uploads: a client asks for an upload (POST /v1/uploads), PUTs its video to the URL it gets, then submits
it once by id (POST /v1/jobs with upload_id). The object key is the server's; the row is the tenant's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.services.errors import Conflict, Invalid, NotFound
from core.vocabulary import UploadError
from db.apikeys import Principal
from db.models import Job, Upload


def upload_object_key(upload_id: uuid.UUID) -> str:
    return f"incoming/{upload_id}"


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value  # SQLite hands back naive UTC


def create_upload(session: Session, submitter: Principal, ttl_s: int, max_bytes: int) -> Upload:
    upload_id = uuid.uuid4()
    upload = Upload(
        id=upload_id,
        tenant=submitter.tenant,
        api_key_id=submitter.id,
        object_key=upload_object_key(upload_id),
        max_bytes=max_bytes,
        expires_at=datetime.now(UTC) + timedelta(seconds=ttl_s),
    )
    session.add(upload)
    session.flush()
    return upload


def usable_upload(session: Session, tenant: str, raw_id: str, idempotency_key: str | None = None) -> Upload:
    """The tenant's upload that no job has used and whose URL has not expired; another tenant's is not found.

    A retry of the submission that used it (the same Idempotency-Key) gets it again, so the job route can replay
    that job as it does for any retried request."""
    try:
        upload_id = uuid.UUID(raw_id)
    except ValueError as exc:
        raise NotFound(UploadError.NOT_FOUND, "no such upload") from exc
    upload = session.scalar(select(Upload).where(Upload.id == upload_id, Upload.tenant == tenant))
    if upload is None:
        raise NotFound(UploadError.NOT_FOUND, "no such upload")
    if upload.used_at is not None:
        if idempotency_key is not None and upload.job_id is not None:
            used_with = session.scalar(select(Job.idempotency_key).where(Job.id == upload.job_id))
            if used_with == idempotency_key:
                return upload
        raise Conflict(UploadError.USED, "this upload was already used by another job; make a new one")
    if _aware(upload.expires_at) <= datetime.now(UTC):
        raise Invalid(UploadError.EXPIRED, "this upload expired before it was used; make a new one")
    return upload
