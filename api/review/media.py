"""Media for the review page: byte ranges of a stored object, and a contact sheet of the sampled frames.

The ObjectStore interface (core/storage.py) moves whole objects; a player needs its size and arbitrary byte
ranges, so this reads both store kinds directly: a local file with seek, S3 with a ranged GET. Nothing is
buffered whole.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from api.errors import ApiError
from core.storage import LocalFolderStore, ObjectMissing, S3Store, StorageError, get_store

CHUNK = 256 * 1024
ObjectRange = tuple[int, int]  # [start, stop)
TILE_HEIGHT = 240
SHEET_COLUMNS = 4
_TRACK_COLOURS = ((230, 57, 70), (29, 120, 220), (245, 166, 35), (46, 139, 87), (142, 68, 173))


@dataclass(frozen=True)
class FaceScores:
    track_id: int
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the upright frame's pixels
    scores: dict[str, float]  # model -> P(fake) of this crop


def _unsupported(store: object) -> ApiError:
    return ApiError(501, "NOT_SUPPORTED", f"streaming from {type(store).__name__} is not supported")


def _missing(key: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", f"the stored video {key!r} is gone")


def storage_api_error(exc: StorageError, key: str) -> ApiError:
    """404 when the object is gone, 503 with Retry-After while the store is unreachable (the same on every route)."""
    if isinstance(exc, ObjectMissing):
        return _missing(key)
    return ApiError(503, "STORAGE_UNAVAILABLE", "the object store is unavailable; retry later", {"Retry-After": "5"})


@contextmanager
def downloaded(key: str, prefix: str) -> Iterator[Path]:
    """The stored object ``key`` in a temporary file, removed afterwards; store errors answer as on every route."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        path = Path(tmp) / "object"
        try:
            get_store().download_to(key, path)
        except StorageError as exc:
            raise storage_api_error(exc, key) from exc
        yield path


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
        except Exception as exc:  # botocore raises ClientError and, store unreachable, its own BotoCoreErrors
            raise storage_api_error(store.error(exc, f"size of {key!r}"), key) from exc
    raise _unsupported(store)


def open_range(key: str, start: int, stop: int) -> Iterator[bytes]:
    """Bytes [start, stop) in chunks; the caller has checked the range against ``object_size``.

    The object is opened now, not on the first chunk: once streaming has begun the status is sent, and a store
    that went away in between could no longer be answered with 503 or 404."""
    store = get_store()
    if isinstance(store, LocalFolderStore):
        return _local_chunks(_local_path(store, key), start, stop - start)
    if not isinstance(store, S3Store):
        raise _unsupported(store)
    try:
        body = store.client.get_object(Bucket=store.bucket, Key=key, Range=f"bytes={start}-{stop - 1}")["Body"]
    except Exception as exc:
        raise storage_api_error(store.error(exc, f"read of {key!r}"), key) from exc
    return _s3_chunks(body)


def _local_chunks(path: Path, start: int, left: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        while left > 0 and (chunk := f.read(min(CHUNK, left))):
            left -= len(chunk)
            yield chunk


def _s3_chunks(body: Any) -> Iterator[bytes]:
    try:
        yield from body.iter_chunks(CHUNK)
    finally:
        body.close()


def frames_sheet(frames: list[tuple[float, NDArray[np.uint8]]], faces: list[list[FaceScores]]) -> bytes:
    """A JPEG contact sheet: each sampled frame with its scored face boxes and per-model scores under it.

    It shows the moderator exactly what the detectors saw, and it works for codecs a browser cannot play.
    """
    tiles = []
    for (timestamp, image), frame_faces in zip(frames, faces, strict=True):
        tile = Image.fromarray(image)
        scale = TILE_HEIGHT / tile.height
        tile = tile.resize((max(1, round(tile.width * scale)), TILE_HEIGHT))
        draw = ImageDraw.Draw(tile)
        lines = [f"{timestamp:.1f} s"]
        for face in frame_faces:
            x1, y1, x2, y2 = (v * scale for v in face.box)
            colour = _TRACK_COLOURS[face.track_id % len(_TRACK_COLOURS)]
            draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
            draw.text((x1 + 3, max(0, y1 - 14)), f"#{face.track_id}", fill=colour)
            lines.append(f"#{face.track_id} " + "  ".join(f"{m} {s:.2f}" for m, s in sorted(face.scores.items())))
        tiles.append((tile, lines))
    width = max(t.width for t, _ in tiles)
    caption = 14 * (1 + max(len(lines) for _, lines in tiles)) + 4
    columns = min(SHEET_COLUMNS, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * (width + 8) + 8, rows * (TILE_HEIGHT + caption + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (tile, lines) in enumerate(tiles):
        x = 8 + (i % columns) * (width + 8)
        y = 8 + (i // columns) * (TILE_HEIGHT + caption + 8)
        sheet.paste(tile, (x, y))
        draw.multiline_text((x, y + TILE_HEIGHT + 4), "\n".join(lines), fill=(29, 35, 48), spacing=3)
    out = io.BytesIO()
    sheet.save(out, format="JPEG", quality=85)
    return out.getvalue()
