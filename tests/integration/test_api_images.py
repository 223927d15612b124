"""Images and animations through POST /v1/jobs (issue 13 items 1 and 4): accepted by their magic bytes whatever
the client calls them, stored under the sniffed MIME type; HEIC and non-media refused with the one 415 code;
bombs and broken headers with 422 (the crafted-file memory test is in test_api_uploads.py)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import Keys, bearer
from tests.support.http import body
from tests.support.images import png_declaring, save_animation, save_still

FRAMES = [np.full((48, 64, 3), shade, np.uint8) for shade in (0, 80, 160)]


def _post(client: FlaskClient, keys: Keys, path: Path) -> TestResponse:
    # Named .bin: the API judges the content, never the client's name or Content-Type.
    return client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(path.read_bytes()), "upload.bin", "application/octet-stream")},
        headers=bearer(keys.submitter),
        content_type="multipart/form-data",
    )


@pytest.mark.parametrize(
    ("name", "mime"),
    [
        ("still.jpg", "image/jpeg"),
        ("still.png", "image/png"),
        ("still.webp", "image/webp"),
        ("still.avif", "image/avif"),
        ("anim.gif", "image/gif"),
        ("anim.png", "image/apng"),
        ("anim.webp", "image/webp"),
    ],
)
def test_images_and_animations_are_queued(
    client: FlaskClient, keys: Keys, tmp_path: Path, name: str, mime: str
) -> None:
    path = tmp_path / name
    if name.startswith("still"):
        save_still(FRAMES[1], path)
    else:
        save_animation(FRAMES, path)
    response = _post(client, keys, path)
    assert response.status_code == 202, response.json
    assert body(response)["content_type"] == mime


@pytest.mark.parametrize(
    "content",
    [b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64), b"BM" + bytes(64), b"II*\x00" + bytes(64)],
    ids=["heic", "bmp", "tiff"],
)
def test_other_image_formats_are_415(client: FlaskClient, keys: Keys, tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "other"
    path.write_bytes(content)
    response = _post(client, keys, path)
    assert (response.status_code, body(response)["error"]["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert "JPEG, PNG, WebP or AVIF" in body(response)["error"]["message"]


def test_an_image_over_the_pixel_limit_or_broken_is_422(client: FlaskClient, keys: Keys, tmp_path: Path) -> None:
    big = _post(client, keys, png_declaring(tmp_path / "big.png", 5000, 5000))
    assert (big.status_code, body(big)["error"]["code"]) == (422, "LIMIT_EXCEEDED")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff" + bytes(100))
    response = _post(client, keys, broken)
    assert (response.status_code, body(response)["error"]["code"]) == (422, "CORRUPT_MEDIA")
