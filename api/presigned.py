"""Presigned uploads for videos too large to send through the API in one request: POST /v1/uploads gives a URL the
client PUTs its video to, then POST /v1/jobs with the upload_id submits it once. With S3 the URL is S3's own
presigned PUT; with the embedded local folder it is this API's PUT /v1/uploads/<id>/content, signed and expiring
the same way and capped while it streams. The job route reads the object back and runs the upload checks on it
(``read_back``) before it queues anything."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import IO

from flask import Blueprint, Response, current_app, jsonify, request, url_for
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth import current_key, require_role
from api.errors import ApiError
from api.openapi import responses, spec
from api.services.errors import BadInput
from api.services.uploads import create_upload, usable_upload
from core.settings import Settings
from core.storage import LocalFolderStore, S3Store, StorageError, get_store
from core.vocabulary import Role, UploadError
from db.models import Upload
from db.session import session_scope

bp = Blueprint("presigned", __name__, url_prefix="/v1/uploads")


class UploadView(BaseModel):
    upload_id: str = Field(description="Submit it with POST /v1/jobs, upload_id=<this>, once the PUT succeeded.")
    url: str = Field(description="PUT the video's bytes here (no Authorization header: the URL is the credential).")
    method: str = Field("PUT")
    expires_at: datetime = Field(description="The URL, and the upload if no job used it, expire then.")
    max_bytes: int = Field(description="The most bytes the upload may hold (VERITY_MAX_UPLOAD_BYTES).")


class UploadContentQuery(BaseModel):
    expires: int = Field(description="Unix time the URL expires.")
    signature: str = Field(max_length=128)


def _settings() -> Settings:
    settings: Settings = current_app.config["VERITY_SETTINGS"]
    return settings


def _signature(upload_id: str, expires: int) -> str:
    # Domain-separated from webhook and review-media signatures: an upload URL never verifies as anything else.
    key = hmac.new(_settings().webhook_secret.encode(), b"verity/upload-url/v1", hashlib.sha256).digest()
    mac = hmac.new(key, f"{upload_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _put_url(upload: Upload) -> str:
    store = get_store()
    expires = int(upload.expires_at.timestamp())
    if isinstance(store, S3Store):
        return str(
            store.client.generate_presigned_url(
                "put_object",
                Params={"Bucket": store.bucket, "Key": upload.object_key},
                ExpiresIn=max(1, expires - int(time.time())),
                HttpMethod="PUT",
            )
        )
    if isinstance(store, LocalFolderStore):
        return url_for(
            "presigned.put_content",
            upload_id=str(upload.id),
            expires=expires,
            signature=_signature(str(upload.id), expires),
            _external=True,
        )
    raise ApiError(501, "NOT_SUPPORTED", f"presigned uploads need S3 or the local folder, not {type(store).__name__}")


@bp.post("")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({201: UploadView}), tags=["jobs"])
def new_upload() -> tuple[Response, int]:
    """Ask for a presigned upload: PUT the video to ``url`` before ``expires_at`` (at most ``max_bytes``), then
    submit it with POST /v1/jobs and ``upload_id``. Usable by one job; unused ones are removed after they expire.
    Role: submitter."""
    settings = _settings()
    with session_scope() as session:
        upload = create_upload(session, current_key(), settings.upload_url_ttl_s, settings.max_upload_bytes)
        view = {
            "upload_id": str(upload.id),
            "url": _put_url(upload),
            "method": "PUT",
            "expires_at": upload.expires_at.isoformat(),
            "max_bytes": upload.max_bytes,
        }
    return jsonify(view), 201


class _Capped:
    """The request body, refused with 413 UPLOAD_TOO_LARGE as soon as it passes the upload's cap."""

    def __init__(self, stream: IO[bytes], cap: int) -> None:
        self._stream = stream
        self._cap = cap
        self._size = 0

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._size += len(data)
        if self._size > self._cap:
            raise ApiError(413, UploadError.TOO_LARGE, f"the upload is larger than its cap of {self._cap} bytes")
        return data


@bp.put("/<upload_id>/content")
@spec.validate(
    query=UploadContentQuery,
    resp=responses({204: None}, 400, 401, 404, 409, 413, public=True),
    security={},
    tags=["jobs"],
)
def put_content(upload_id: str) -> tuple[str, int]:
    """The embedded store's presigned PUT: the URL POST /v1/uploads gave, signed and expiring; the body is the
    video, capped while it streams. No key: the signed URL is the credential."""
    from api.review.media import storage_api_error  # api.review imports api.jobs, which imports this module

    args: UploadContentQuery = request.context.query  # type: ignore[attr-defined]
    if args.expires < time.time() or not hmac.compare_digest(
        args.signature.encode(), _signature(upload_id, args.expires).encode()
    ):
        raise ApiError(401, "UNAUTHENTICATED", "the upload URL is invalid or expired; ask for a new upload")
    with session_scope() as session:
        upload = session.scalar(select(Upload).where(Upload.id == uuid.UUID(upload_id)))
        if upload is None:
            raise ApiError(404, UploadError.NOT_FOUND, "no such upload")
        if upload.used_at is not None:
            raise ApiError(409, UploadError.USED, "this upload was already used by a job")
        key, cap = upload.object_key, upload.max_bytes
    request.max_content_length = cap
    try:
        get_store().put_stream(key, _Capped(request.stream, cap))  # type: ignore[arg-type]  # an IO by duck typing
    except StorageError as exc:
        raise storage_api_error(exc, key) from exc
    return "", 204


@contextmanager
def read_back(tenant: str, raw_id: str, idempotency_key: str | None) -> Iterator[tuple[uuid.UUID, IO[bytes]]]:
    """The tenant's usable upload, read back from the store into a local file the upload checks can probe."""
    from api.review.media import downloaded, object_size  # api.review imports api.jobs, which imports us

    with session_scope() as session:
        upload = usable_upload(session, tenant, raw_id, idempotency_key)
        upload_id, key, cap = upload.id, upload.object_key, upload.max_bytes
    try:
        size = object_size(key)
    except ApiError as exc:
        if exc.status != 404:
            raise
        size = 0
    if size == 0:
        raise BadInput(UploadError.EMPTY, "nothing was PUT to this upload's URL yet")
    if size > cap:
        raise ApiError(413, UploadError.TOO_LARGE, f"the upload holds {size} bytes, more than its cap of {cap}")
    with downloaded(key, "verity-upload-") as path, path.open("rb") as stream:
        yield upload_id, stream
