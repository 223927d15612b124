"""Byte ranges of a stored object, for streaming a video to the review page.

The ObjectStore interface (db/storage.py) moves whole objects; a player needs its size and arbitrary byte
ranges, so this reads both store kinds directly: a local file with seek, S3 with a ranged GET. Nothing is
buffered whole.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from api.errors import ApiError
from db.storage import LocalFolderStore, S3Store, get_store

CHUNK = 256 * 1024
ObjectRange = tuple[int, int]  # [start, stop)


def _unsupported(store: object) -> ApiError:
    return ApiError(501, "NOT_SUPPORTED", f"streaming from {type(store).__name__} is not supported")


def _missing(key: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"the stored video {key!r} is gone")


def _local_path(store: LocalFolderStore, key: str) -> Path:
    path = (store.root / key).resolve()
    if not path.is_relative_to(store.root.resolve()) or not path.is_file():
        raise _missing(key)
    return path


def object_size(key: str) -> int:
    store = get_store()
    if isinstance(store, LocalFolderStore):
        return _local_path(store, key).stat().st_size
    if isinstance(store, S3Store):
        try:
            return int(store.client.head_object(Bucket=store.bucket, Key=key)["ContentLength"])
        except store.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise _missing(key) from exc
            raise ApiError(503, "STORAGE_UNAVAILABLE", "the object store is unavailable; retry later") from exc
    raise _unsupported(store)


def read_range(key: str, start: int, stop: int) -> Iterator[bytes]:
    """Yield bytes [start, stop) in chunks; the caller has checked the range against ``object_size``."""
    store = get_store()
    if isinstance(store, LocalFolderStore):
        with _local_path(store, key).open("rb") as f:
            f.seek(start)
            left = stop - start
            while left > 0 and (chunk := f.read(min(CHUNK, left))):
                left -= len(chunk)
                yield chunk
        return
    if not isinstance(store, S3Store):
        raise _unsupported(store)
    body = store.client.get_object(Bucket=store.bucket, Key=key, Range=f"bytes={start}-{stop - 1}")["Body"]
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()
