"""Jobs without a file part: submit by URL, and large files through a presigned upload (POST /v1/uploads)
streamed from disk with progress."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import requests

from client.types import JobWithResultJson, Json

# Called with (bytes sent, total bytes) as the upload streams.
Progress = Callable[[int, int], None]
CHUNK = 1024 * 1024


class _Reader:
    """The file as requests streams it (a known length, so no chunked encoding), reporting progress."""

    def __init__(self, stream: BinaryIO, total: int, progress: Progress | None) -> None:
        self._stream = stream
        self._total = total
        self._sent = 0
        self._progress = progress

    def __len__(self) -> int:
        return self._total

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(CHUNK if size < 0 else size)
        self._sent += len(data)
        if self._progress is not None and data:
            self._progress(self._sent, self._total)
        return data


def put_file(url: str, path: Path, progress: Progress | None, timeout: float) -> requests.Response:
    """PUT the file's bytes to the presigned URL, with no API key: the URL is the credential. Never via a proxy
    from the environment either, which a presigned URL to the embedded API could not pass."""
    total = path.stat().st_size
    with path.open("rb") as stream, requests.Session() as session:
        return session.put(
            url, data=_Reader(stream, total, progress), headers={"Content-Length": str(total)}, timeout=timeout
        )


def job_fields(
    webhook_url: str | None = None,
    max_frames: int | None = None,
    metadata: Json | None = None,
    wait_s: float | None = None,
) -> dict[str, str]:
    """A job's optional form fields, as text."""
    fields: dict[str, str] = {} if wait_s is None else {"wait": str(wait_s)}
    if webhook_url:
        fields["webhook_url"] = webhook_url
    if max_frames is not None:
        fields["max_frames"] = str(max_frames)
    if metadata is not None:
        fields["metadata"] = json.dumps(metadata)
    return fields


class _Client(Protocol):
    upload_timeout: float

    def _json(self, method: str, path: str, **kwargs: Any) -> Json: ...


class SubmitSources:
    """VerityClient's submissions without a file part: by URL, and by presigned upload (client/api.py)."""

    def submit_url(
        self: _Client, source_url: str, idempotency_key: str | None = None, **options: Any
    ) -> JobWithResultJson:
        """Submit by URL: the server's worker fetches ``source_url`` (http(s), public addresses only). ``options``:
        ``webhook_url``, ``max_frames``, ``metadata``, ``wait_s`` as for ``submit``."""
        return _submit_fields(self, {"source_url": source_url}, idempotency_key, job_fields(**options))

    def submit_presigned(
        self: _Client,
        path: str | os.PathLike[str],
        progress: Progress | None = None,
        idempotency_key: str | None = None,
        **options: Any,
    ) -> JobWithResultJson:
        """A large file: PUT it to a presigned upload URL (``progress(sent, total)`` as it streams), then submit the
        upload by its id. ``options`` as for ``submit_url``."""
        from client.api import VerityError  # client.api builds VerityClient on this class

        upload = self._json("POST", "/v1/uploads")
        response = put_file(upload["url"], Path(path), progress, self.upload_timeout)
        if response.status_code >= 300:
            raise VerityError(f"the presigned upload failed: HTTP {response.status_code}", "UPLOAD_FAILED", 502)
        return _submit_fields(self, {"upload_id": upload["upload_id"]}, idempotency_key, job_fields(**options))


def _submit_fields(
    client: _Client, source: dict[str, str], idempotency_key: str | None, fields: dict[str, str]
) -> JobWithResultJson:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    # A multipart body with no file part: requests encodes (None, value) as a plain field.
    parts = {name: (None, value) for name, value in {**source, **fields}.items()}
    job = client._json("POST", "/v1/jobs", files=parts, headers=headers, timeout=client.upload_timeout)
    return cast(JobWithResultJson, job)
