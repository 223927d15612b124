"""The checks every input passes before a job may use it, however it arrived (a multipart upload, a presigned
upload, a fetched source_url): not empty, an accepted container by its magic bytes, and container metadata within
the limits, decoding nothing. The API (api/uploads.py) and the worker's fetch (workers/fetch.py) both call these,
so one input is judged the same way whichever road it took."""

from __future__ import annotations

import hashlib
from collections.abc import Set
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from core.media.container import ACCEPTED_FORMATS, SNIFF_BYTES, sniff_container
from core.media.errors import MediaError
from core.media.probe import Limits, check_limits, probe_video

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Admitted:
    """What an input's bytes say: its size, content hash and the MIME type of its sniffed container."""

    size: int
    sha256: str
    content_type: str


def sniff_stream(stream: IO[bytes]) -> Admitted:
    """Hash and sniff a whole stream (left rewound); EMPTY_FILE or UNSUPPORTED_MEDIA_TYPE as MediaError."""
    stream.seek(0)
    head = stream.read(SNIFF_BYTES)
    if not head:
        raise MediaError("EMPTY_FILE", "the file is empty")
    sniffed = sniff_container(head)
    if sniffed is None:
        raise MediaError(
            "UNSUPPORTED_MEDIA_TYPE",
            f"the file is not in an accepted format ({ACCEPTED_FORMATS}), judged by its content",
        )
    digest = hashlib.sha256(head)
    size = len(head)
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    stream.seek(0)
    return Admitted(size=size, sha256=digest.hexdigest(), content_type=sniffed.mime_type)


def check_probe(path: Path, accepted_codecs: Set[str]) -> None:
    """The container's declared resolution, duration and frame count within the limits, in an accepted codec."""
    check_limits(probe_video(path, accepted_codecs), Limits())


def admit_file(path: Path, accepted_codecs: Set[str]) -> Admitted:
    with path.open("rb") as stream:
        admitted = sniff_stream(stream)
    check_probe(path, accepted_codecs)
    return admitted
