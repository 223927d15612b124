"""Upload checks that need no decoding: emptiness, magic bytes against an allow-list of containers, and the
resolution / duration / frame-count limits the container declares (core.media.probe, PyAV only)."""

from __future__ import annotations

import tempfile
from collections.abc import Set
from pathlib import Path
from typing import IO, Any

from werkzeug.exceptions import RequestEntityTooLarge

from api.services.errors import BadInput, Invalid, Unsupported
from api.services.jobs import SniffedUpload
from core.media.admit import check_probe, sniff_stream
from core.media.errors import MediaError


def inspect_upload(stream: IO[bytes]) -> SniffedUpload:
    try:
        admitted = sniff_stream(stream)
    except MediaError as exc:
        refusal = BadInput if exc.code == "EMPTY_FILE" else Unsupported
        raise refusal(exc.code, "the uploaded file is empty" if exc.code == "EMPTY_FILE" else exc.message) from exc
    return SniffedUpload(size=admitted.size, sha256=admitted.sha256, content_type=admitted.content_type)


def display_filename(raw: str | None) -> str | None:
    """A client filename kept for display only: no path parts, no control characters, bounded length."""
    if not raw:
        return None
    name = raw.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if ch.isprintable())
    return name[:255] or None


class CappedSpool:
    """Where werkzeug spools a multipart file part: a named temporary file, so the container can be probed by path
    before it is stored (werkzeug would keep a small part in memory). It counts what werkzeug writes and refuses
    the part once it passes the upload cap: 413 while the body still streams, before anything is stored.

    The client's filename never reaches the path; werkzeug closes (and so deletes) the file after the request.
    """

    def __init__(self, cap: int) -> None:
        # Closed by werkzeug with the request's files, or by write() on refusal.
        self._file = tempfile.NamedTemporaryFile("w+b", prefix="verity-upload-")  # noqa: SIM115
        self._cap = cap
        self._size = 0

    def write(self, data: bytes) -> int:
        self._size += len(data)
        if self._size > self._cap:
            self._file.close()
            raise RequestEntityTooLarge(f"the file is larger than the upload cap of {self._cap} bytes")
        return self._file.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def check_media(stream: IO[bytes], accepted_codecs: Set[str]) -> None:
    """Probe the spooled upload (a CappedSpool: a named file on disk) for its container metadata, decoding no
    frame, and refuse it over the limits or in a codec outside `accepted_codecs` (VERITY_ACCEPTED_CODECS)."""
    stream.flush()
    try:
        check_probe(Path(stream.name), accepted_codecs)
    except MediaError as exc:
        # A codec outside the allow-list is an unsupported type (the same 415 code as a refused container);
        # everything else is unprocessable content.
        refusal = Unsupported if exc.code == "UNSUPPORTED_MEDIA_TYPE" else Invalid
        raise refusal(exc.code, exc.message) from exc
    finally:
        stream.seek(0)
