"""Upload checks that need no decoding: emptiness, magic bytes against an allow-list of containers, and the
resolution / duration / frame-count limits the container declares (core.media.probe, PyAV only)."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Set
from pathlib import Path
from typing import IO, Any

from werkzeug.exceptions import RequestEntityTooLarge

from api.services.errors import BadInput, Invalid, Unsupported
from api.services.jobs import SniffedUpload
from core.media.container import sniff_container
from core.media.errors import MediaError
from core.media.probe import Limits, check_limits, probe_video

CHUNK = 1024 * 1024


def inspect_upload(stream: IO[bytes]) -> SniffedUpload:
    stream.seek(0)
    head = stream.read(64)
    if not head:
        raise BadInput("EMPTY_FILE", "the uploaded file is empty")
    sniffed = sniff_container(head)
    if sniffed is None:
        raise Unsupported(
            "UNSUPPORTED_MEDIA_TYPE",
            "the file is not a supported video container (MP4/MOV, WebM/Matroska or AVI), judged by its content",
        )
    digest = hashlib.sha256(head)
    size = len(head)
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return SniffedUpload(size=size, sha256=digest.hexdigest(), content_type=sniffed.mime_type)


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
        check_limits(probe_video(Path(stream.name), accepted_codecs), Limits())
    except MediaError as exc:
        # A codec outside the allow-list is an unsupported type (the same 415 code as a refused container);
        # everything else is unprocessable content.
        refusal = Unsupported if exc.code == "UNSUPPORTED_MEDIA_TYPE" else Invalid
        raise refusal(exc.code, exc.message) from exc
    finally:
        stream.seek(0)
