"""A small typed client for Verity's HTTP API (v1). It needs only ``requests``.

Every non-2xx answer becomes a ``VerityError`` subclass carrying the server's ``{"error": {code, message}}``.
Idempotent GETs are retried with exponential backoff on connection errors and 429/502/503/504 (``Retry-After``
honoured); nothing else is retried, so a submit or a feedback is never sent twice by the client itself.
"""

from __future__ import annotations

import mimetypes
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, cast

import requests

from client.types import BatchJson, HeatmapListJson, JobJson, JobWithResultJson, Json, ResultJson, SimulationJson
from client.uploads import SubmitSources, job_fields

TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
DEFAULT_URL = "http://127.0.0.1:8000"
# 429 too: a long wait() must not die of a transient rate limit; Retry-After says when to come back.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
MAX_RETRY_DELAY_S = 30.0


class VerityError(Exception):
    """The API refused a request (``status`` set) or could not be reached (``status`` None)."""

    def __init__(self, message: str, code: str = "ERROR", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status

    def __str__(self) -> str:
        where = f"HTTP {self.status} " if self.status is not None else ""
        return f"{where}{self.code}: {self.message}"


class InvalidRequestError(VerityError):
    """400, 413, 415, 422: the request itself is wrong (parameters, file type, size, webhook URL)."""


class AuthError(VerityError):
    """401 (missing, invalid or revoked key) or 403 (the key's role may not do this)."""


class NotFoundError(VerityError):
    """404: no such job (another tenant's job looks the same)."""


class ConflictError(VerityError):
    """409: the job is not in a state for this (result not ready, job failed, already finished)."""


class RateLimitedError(VerityError):
    """429: slow down."""


class ServerError(VerityError):
    """5xx: the server or one of its services is failing."""


class NetworkError(VerityError):
    """No HTTP answer at all: refused connection, DNS failure, timeout."""


class WaitTimeout(VerityError):
    """``wait`` gave up before the job reached a terminal status; ``job`` is the last state seen."""

    def __init__(self, message: str, job: JobJson) -> None:
        super().__init__(message, code="WAIT_TIMEOUT")
        self.job = job


def _error_class(status: int) -> type[VerityError]:
    if status in (401, 403):
        return AuthError
    if status == 404:
        return NotFoundError
    if status == 409:
        return ConflictError
    if status == 429:
        return RateLimitedError
    if status >= 500:
        return ServerError
    return InvalidRequestError


def error_from_response(response: requests.Response) -> VerityError:
    code, message = f"HTTP_{response.status_code}", response.text.strip()[:500] or response.reason
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", code))
        message = str(body["error"].get("message", message))
    return _error_class(response.status_code)(message, code=code, status=response.status_code)


def _quote(value: str) -> str:
    """A header-safe quoted-string for a Content-Disposition parameter (the server treats names as display-only)."""
    return value.replace("\\", "_").replace('"', "_").replace("\r", "_").replace("\n", "_")


class MultipartFile:
    """A multipart/form-data body that streams files from disk between small in-memory parts.

    ``requests`` would read the whole file into memory for ``files=``; this object has a known length (so
    the upload carries Content-Length, which lets the server refuse an oversized upload up front) and is
    read in chunks by the HTTP connection.
    """

    def __init__(self, path: Path | Sequence[Path], fields: dict[str, str], field_name: str = "file") -> None:
        self.boundary = f"verity-{uuid.uuid4().hex}"
        self._paths = [path] if isinstance(path, Path) else list(path)
        self._size = sum(p.stat().st_size for p in self._paths)
        parts = [
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'.encode()
            + value.encode()
            + b"\r\n"
            for name, value in fields.items()
        ]
        # One head per file (several: a batch); the CRLF that ends a file part opens the next head.
        self._heads = [
            (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{field_name}"; filename="{_quote(p.name)}"\r\n'
                f"Content-Type: {mimetypes.guess_type(p.name)[0] or 'application/octet-stream'}\r\n\r\n"
            ).encode()
            for p in self._paths
        ]
        self._heads = [b"".join(parts) + self._heads[0], *(b"\r\n" + head for head in self._heads[1:])]
        self._tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._segments: list[IO[bytes] | bytes] = []
        self._files: list[IO[bytes]] = []

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        return sum(len(head) for head in self._heads) + self._size + len(self._tail)

    def __enter__(self) -> MultipartFile:
        self._files = [p.open("rb") for p in self._paths]
        self._segments = []
        for head, file in zip(self._heads, self._files, strict=True):
            self._segments += [head, file]
        self._segments.append(self._tail)
        return self

    def __exit__(self, *exc: object) -> None:
        for file in self._files:
            file.close()

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (everything left for -1), crossing from one segment into the next."""
        out = bytearray()
        while self._segments and (size < 0 or len(out) < size):
            segment = self._segments[0]
            want = -1 if size < 0 else size - len(out)
            if isinstance(segment, bytes):
                take = segment if want < 0 else segment[:want]
                rest = segment[len(take) :]
                if rest:
                    self._segments[0] = rest
                else:
                    self._segments.pop(0)
                out += take
            else:
                chunk = segment.read(want)
                if not chunk:
                    self._segments.pop(0)
                out += chunk
        return bytes(out)


class VerityClient(SubmitSources):
    """``VerityClient("http://127.0.0.1:8000", api_key)``; ``timeout`` is per HTTP request, in seconds."""

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = 30.0,
        upload_timeout: float = 600.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        # The server stores the whole upload in the object store before it answers.
        self.upload_timeout = upload_timeout
        self.retries = retries
        self.backoff_s = backoff_s
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = "verity-client/1"
        if api_key:
            self.session.headers["Authorization"] = f"Bearer {api_key}"

    @classmethod
    def from_env(cls, **kwargs: Any) -> VerityClient:
        """Base URL from ``VERITY_URL`` and key from ``VERITY_API_KEY``."""
        return cls(os.environ.get("VERITY_URL", DEFAULT_URL), os.environ.get("VERITY_API_KEY"), **kwargs)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> VerityClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ---------------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout)
        try:
            return self.session.request(method, f"{self.base_url}{path}", **kwargs)
        except requests.RequestException as exc:
            raise NetworkError(f"{method} {self.base_url}{path}: {exc}", code="NETWORK_ERROR") from exc

    def _retry_delay(self, attempt: int, response: requests.Response | None) -> float:
        if response is not None and (raw := response.headers.get("Retry-After")):
            try:
                return min(max(float(raw), 0.0), MAX_RETRY_DELAY_S)
            except ValueError:
                pass
        return float(min(self.backoff_s * 2**attempt, MAX_RETRY_DELAY_S))

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request; a GET is retried on network errors and 429/502/503/504, everything else is sent once."""
        attempts = self.retries + 1 if method == "GET" else 1
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self._send(method, path, **kwargs)
            except NetworkError:
                if last:
                    raise
                time.sleep(self._retry_delay(attempt, None))
                continue
            if response.status_code in RETRY_STATUSES and not last:
                time.sleep(self._retry_delay(attempt, response))
                continue
            if response.status_code >= 400:
                raise error_from_response(response)
            return response
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _json(self, method: str, path: str, **kwargs: Any) -> Json:
        body: Json = self._request(method, path, **kwargs).json()
        return body

    # -- jobs --------------------------------------------------------------------------------------------

    def submit(
        self,
        path: str | os.PathLike[str],
        webhook_url: str | None = None,
        idempotency_key: str | None = None,
        max_frames: int | None = None,
        metadata: Json | None = None,
        wait_s: float | None = None,
        explain: bool | None = None,
    ) -> JobWithResultJson:
        """Upload a video (streamed from disk) and return the queued job (or, for a replayed
        ``idempotency_key``, the job that key already made). ``wait_s``: the server holds the request up to that
        long (cut to its VERITY_MAX_WAIT_S) and returns the job with its ``result`` if it ended by then.
        ``explain``: also make heatmaps (see :meth:`heatmaps`); None leaves it to the server's default."""
        fields = job_fields(webhook_url, max_frames, metadata, wait_s)
        if explain is not None:
            fields["explain"] = str(explain).lower()
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with MultipartFile(Path(path), fields) as body:
            headers["Content-Type"] = body.content_type
            headers["Content-Length"] = str(len(body))
            job = self._json("POST", "/v1/jobs", data=body, headers=headers, timeout=self.upload_timeout)
        return cast(JobWithResultJson, job)

    # -- batches -----------------------------------------------------------------------------------------

    def submit_batch(
        self,
        paths: Sequence[str | os.PathLike[str]],
        webhook_url: str | None = None,
        per_item_webhooks: bool = False,
        idempotency_key: str | None = None,
        max_frames: int | None = None,
    ) -> BatchJson:
        """Upload several files in one request (streamed from disk), one job each; returns the QUEUED batch. The
        batch's ``webhook_url`` gets one batch.completed event; ``per_item_webhooks`` also sends each job's."""
        fields = {"per_item_webhooks": str(per_item_webhooks).lower()}
        if webhook_url:
            fields["webhook_url"] = webhook_url
        if max_frames is not None:
            fields["max_frames"] = str(max_frames)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        with MultipartFile([Path(p) for p in paths], fields) as body:
            headers.update({"Content-Type": body.content_type, "Content-Length": str(len(body))})
            batch = self._json("POST", "/v1/batches", data=body, headers=headers, timeout=self.upload_timeout)
        return cast(BatchJson, batch)

    def batch(self, batch_id: str) -> BatchJson:
        """The batch: status, counts per job status, each item's job id, status, verdict and score."""
        return cast(BatchJson, self._json("GET", f"/v1/batches/{batch_id}"))

    def job(self, job_id: str) -> JobJson:
        return cast(JobJson, self._json("GET", f"/v1/jobs/{job_id}"))

    def jobs(self, status: str | None = None, limit: int = 20, cursor: str | None = None) -> Iterator[JobJson]:
        """Every job of the key's tenant, newest first, fetched ``limit`` per page as the iterator advances."""
        while True:
            params: dict[str, str | int] = {"limit": limit}
            if status:
                params["status"] = status
            if cursor:
                params["cursor"] = cursor
            page = self._json("GET", "/v1/jobs", params=params)
            yield from page["jobs"]
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def result(self, job_id: str) -> ResultJson:
        """The verdict and its detail; ``ConflictError`` until the job has SUCCEEDED."""
        return cast(ResultJson, self._json("GET", f"/v1/jobs/{job_id}/result"))

    def heatmaps(self, job_id: str) -> HeatmapListJson:
        """The job's heatmaps (explain=true jobs; empty otherwise); ``ConflictError`` until it has SUCCEEDED."""
        return cast(HeatmapListJson, self._json("GET", f"/v1/jobs/{job_id}/heatmaps"))

    def heatmap_png(self, url: str) -> bytes:
        """One heatmap's PNG, by the ``url`` :meth:`heatmaps` lists."""
        return self._request("GET", url).content

    def cancel(self, job_id: str) -> JobJson:
        return cast(JobJson, self._json("DELETE", f"/v1/jobs/{job_id}"))

    def feedback(self, job_id: str, label: str, category: str | None = None, note: str | None = None) -> Json:
        """A moderator's label (REAL | FAKE | UNKNOWN) for a finished job; needs the moderator role."""
        body: Json = {"label": label}
        if category is not None:
            body["category"] = category
        if note is not None:
            body["note"] = note
        return self._json("POST", f"/v1/jobs/{job_id}/feedback", json=body)

    def wait(
        self,
        job_id: str,
        poll_s: float = 1.0,
        timeout_s: float | None = None,
        on_progress: Callable[[JobJson], None] | None = None,
    ) -> JobJson:
        """Poll until the job is SUCCEEDED, FAILED or CANCELLED and return it. ``on_progress`` gets the job
        each time its status, stage or progress changes. Raises ``WaitTimeout`` after ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen: tuple[Any, ...] | None = None
        while True:
            job = self.job(job_id)
            state = (job.get("status"), job.get("stage"), job.get("progress"))
            if state != seen:
                seen = state
                if on_progress is not None:
                    on_progress(job)
            if job.get("status") in TERMINAL_STATUSES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"job {job_id} is still {job.get('status')} ({job.get('stage')}) after {timeout_s:g} s", job
                )
            pause = poll_s if deadline is None else min(poll_s, max(deadline - time.monotonic(), 0.0))
            time.sleep(pause)

    # -- webhooks ----------------------------------------------------------------------------------------

    def deliveries(self, job_id: str) -> list[Json]:
        """The job's webhook deliveries: event, state, attempts, last status and error, next attempt."""
        deliveries: list[Json] = self._json("GET", f"/v1/jobs/{job_id}/webhooks")["deliveries"]
        return deliveries

    def redeliver(self, job_id: str, delivery_id: str) -> Json:
        """Send a delivery again (same ``webhook-id``); accepts the delivery id or its ``msg_…`` webhook id."""
        return self._json("POST", f"/v1/jobs/{job_id}/webhooks/{delivery_id}/redeliver")

    # -- live-stream simulator (admin) -------------------------------------------------------------------

    def simulate(self, body: Json | None = None) -> SimulationJson:
        """Replay the tenant's labelled stored jobs as live streams (POST /v1/admin/simulate; admin role). ``body``:
        strategies, fps, window, labels, calibration_version, per_frame_ms, timelines, max_videos, fit_per_frame."""
        return cast(SimulationJson, self._json("POST", "/v1/admin/simulate", json=body or {}))
