"""Hostile uploads through the API (issue 5 item 12): files whose container declares a huge frame size, frame
count or duration, or that are corrupt, are refused with 422 from metadata alone - fast, in bounded memory and
before anything is stored; client filenames never reach a storage key or a path."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct
import subprocess
import sys
import uuid
from collections.abc import Iterator, Set
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import REPO, Keys, Services, bearer
from tests.support.http import body
from tests.support.images import jpeg_declaring, png_declaring, webp_declaring
from tests.support.videos import box_path, h264_mp4_declaring, tiny_mp4, write_avi, write_video


def _mkv_declaring_frames(path: Path) -> Path:
    """Two frames 200 s apart at a declared 1000 fps: the container claims 200,001 frames."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=1000)
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, 1000)
        for pts in (0, 200_000):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return path


def _mp4_declaring_samples(path: Path, count: int) -> Path:
    """A valid tiny MP4 whose stsz box then declares `count` constant-size video samples."""
    data = bytearray(tiny_mp4(7))
    stsz = box_path(data, ["moov", "trak", "mdia", "minf", "stbl", "stsz"])[-1]
    data[stsz + 12 : stsz + 20] = struct.pack(">II", 1, count)  # sample_size, sample_count
    path.write_bytes(bytes(data))
    return path


def crafted(tmp: Path) -> dict[str, tuple[Path, str, str]]:
    """name -> (file, expected error code, a word the message contains)."""
    long = tmp / "long.mp4"
    write_video(long, frames=2, pts=[0, 25 * 3 * 3600])  # two frames three hours apart
    garbage = tmp / "garbage.mp4"
    garbage.write_bytes(tiny_mp4(8)[:32] + os.urandom(4096))
    return {
        "16384x16384": (
            h264_mp4_declaring(tmp / "huge.mp4", sps_side=16384, container_side=16384),
            "LIMIT_EXCEEDED",
            "16384x16384",
        ),
        "200k frames": (_mkv_declaring_frames(tmp / "frames.mkv"), "LIMIT_EXCEEDED", "frames"),
        "50M samples": (_mp4_declaring_samples(tmp / "samples.mp4", 50_000_000), "LIMIT_EXCEEDED", "samples"),
        "3 hours": (long, "LIMIT_EXCEEDED", "duration"),
        "corrupt": (garbage, "CORRUPT_MEDIA", ""),
        # Image bombs (issue 13): refused from the header, never decoded.
        "png 100000x100000": (png_declaring(tmp / "bomb.png", 100_000, 100_000), "LIMIT_EXCEEDED", "pixels"),
        "jpeg 65000x65000": (jpeg_declaring(tmp / "bomb.jpg", 65_000, 65_000), "LIMIT_EXCEEDED", "pixels"),
        "webp 16000x16000": (webp_declaring(tmp / "bomb.webp", 16_000, 16_000), "LIMIT_EXCEEDED", "16000x16000"),
        "png 5000x5000": (png_declaring(tmp / "big.png", 5000, 5000), "LIMIT_EXCEEDED", "5000x5000"),
    }


@pytest.fixture(scope="module")
def client(services: Services) -> Iterator[FlaskClient]:
    from api.app import create_app

    with create_app().test_client() as c:
        yield c


# Runs in a fresh process so its peak RSS measures the API handling the uploads, nothing else of the suite.
_PROBE_SCRIPT = """
import io, json, sys, time
from api.app import create_app
client = create_app().test_client()
out = {}
for name, path in json.loads(sys.argv[1]).items():
    started = time.perf_counter()
    with open(path, "rb") as f:
        response = client.post("/v1/jobs", data={"file": (f, "clip.mp4")}, content_type="multipart/form-data",
                               headers={"Authorization": "Bearer " + sys.argv[2]})
    out[name] = [response.status_code, response.json["error"], time.perf_counter() - started]
# VmHWM belongs to this exec'd image; ru_maxrss would carry over the forking pytest process's peak.
with open("/proc/self/status") as status:
    out["max_rss_mb"] = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:")) / 1024
print(json.dumps(out))
"""


def test_declared_huge_or_corrupt_files_are_422_fast_in_bounded_memory_and_never_stored(
    services: Services, keys: Keys, tmp_path: Path
) -> None:
    cases = crafted(tmp_path)
    assert all(path.stat().st_size < 20_000 for path, _, _ in cases.values()), "small files, huge declarations"
    files = {name: str(path) for name, (path, _, _) in cases.items()}
    run = subprocess.run(
        [sys.executable, "-c", _PROBE_SCRIPT, json.dumps(files), keys.submitter],
        cwd=REPO,
        env={**os.environ, "VERITY_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    for name, (_, code, needle) in cases.items():
        status, error, elapsed = out[name]
        assert (status, error["code"]) == (422, code), (name, error)
        assert needle in error["message"], (name, error)
        assert elapsed < 5.0, f"{name} took {elapsed:.2f} s"  # the bound; it takes milliseconds
    assert out["max_rss_mb"] < 512, out["max_rss_mb"]

    from sqlalchemy import func, select

    from db.models import Job
    from db.session import session_scope

    digests = [hashlib.sha256(path.read_bytes()).hexdigest() for path, _, _ in cases.values()]
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job).where(Job.sha256.in_(digests))) == 0


def test_unsupported_codec_is_415(client: FlaskClient, keys: Keys, tmp_path: Path) -> None:
    path = tmp_path / "lossless.mkv"
    write_video(path, codec="ffv1", fmt="matroska")
    response = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(path.read_bytes()), "lossless.mkv")},
        headers=bearer(keys.submitter),
        content_type="multipart/form-data",
    )
    assert response.status_code == 415 and body(response)["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert "'ffv1' is not accepted" in body(response)["error"]["message"]


def _post(client: FlaskClient, keys: Keys, data: bytes, name: str) -> TestResponse:
    return client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(data), name)},
        headers=bearer(keys.submitter),
        content_type="multipart/form-data",
    )


@pytest.mark.parametrize("codec", ["mjpeg", "msmpeg4v3", "mpeg4"])
def test_webcam_and_legacy_avi_codecs_are_accepted(client: FlaskClient, keys: Keys, tmp_path: Path, codec: str) -> None:
    """Issue 13: a 160x120 webcam MJPEG AVI and MPEG-4 Part 2 AVIs (DivX / Windows MPEG-4 v3) are queued."""
    path = write_avi(tmp_path / f"{codec}.avi", codec)
    response = _post(client, keys, path.read_bytes(), f"{codec}.avi")
    assert response.status_code == 202, response.json


def test_a_refused_codec_and_a_refused_container_answer_the_same_415(
    client: FlaskClient, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As VERITY_ACCEPTED_CODECS=h264 would configure it (load_settings is tested in tests/media/test_media_probe.py).
    config = client.application.config
    monkeypatch.setitem(
        config, "VERITY_SETTINGS", replace(config["VERITY_SETTINGS"], accepted_codecs=frozenset({"h264"}))
    )
    webcam = write_avi(tmp_path / "webcam.avi", "mjpeg")
    codec = _post(client, keys, webcam.read_bytes(), "webcam.avi")
    container = _post(client, keys, b"RIFF\x00\x00\x00\x00WAVEfmt " + bytes(64), "sound.wav")
    assert (codec.status_code, body(codec)["error"]["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert body(codec)["error"]["message"] == "video codec 'mjpeg' is not accepted; accepted codecs: h264"
    assert (container.status_code, body(container)["error"]["code"]) == (415, "UNSUPPORTED_MEDIA_TYPE")
    assert "MP4/MOV, WebM/Matroska, AVI, GIF" in body(container)["error"]["message"]
    assert _post(client, keys, tiny_mp4(9), "ok.mp4").status_code == 202  # h264 still passes


@pytest.mark.parametrize(
    "name",
    ["../../etc/passwd", "..\\..\\windows\\win.ini", "clip\x00.mp4", "a/../../b\x00/../c.mp4", "x" * 10_240 + ".mp4"],
    ids=["dotdot", "backslashes", "nul", "mixed", "10kB"],
)
def test_client_filenames_never_reach_a_key_or_a_path(
    client: FlaskClient, keys: Keys, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import core.media.admit
    from core.media.probe import VideoInfo, probe_video
    from core.storage import get_store
    from db.models import Job
    from db.session import session_scope

    probed: list[Path] = []

    def recording_probe(path: Path, accepted_codecs: Set[str] | None = None) -> VideoInfo:
        probed.append(path)
        return probe_video(path, accepted_codecs)

    monkeypatch.setattr(core.media.admit, "probe_video", recording_probe)  # the name the upload check calls
    response = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(tiny_mp4(4)), name)},
        headers=bearer(keys.submitter),
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json
    job = body(response)
    shown = job["filename"] or ""
    assert "/" not in shown and "\\" not in shown and "\x00" not in shown and ".." not in shown.split("/")
    assert len(shown) <= 255
    # The spooled upload's path is tempfile's own name, with nothing of the client's.
    assert len(probed) == 1 and probed[0].name.startswith("verity-upload-") and "passwd" not in str(probed[0])
    with session_scope() as s:
        row = s.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.input_key == f"uploads/{job['id']}"
    objects = get_store().client.list_objects_v2(Bucket="verity-test")["Contents"]  # type: ignore[attr-defined]
    # Every key in the bucket is the server's own: a fixed prefix (uploads/, or incoming/ for presigned uploads)
    # and a uuid (heatmaps/<job id>/<n>.png for explained jobs), whatever the clients called their files.
    own = r"(uploads|incoming)/[0-9a-f-]{36}|heatmaps/[0-9a-f-]{36}/[0-9]+\.png"
    assert all(re.fullmatch(own, o["Key"]) for o in objects), objects
