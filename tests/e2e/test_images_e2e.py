"""End to end (issue 13 items 1 and 4): a still image and a GIF through gunicorn and a real Celery worker.

The image goes through the same pipeline as a video, as one frame: every face a track of length 1, every member
scored, a verdict, `media: "image"` in the result and the signed webhook. An image without a face is NO_FACE; a
GIF is a video of its own frames.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.conftest import Keys, bearer, shared_file
from tests.e2e.conftest import Stack, hooks_for, submit, wait_terminal
from tests.support.images import FACE_CLIP, ROTATED_90_CW, clip_frames, first_frame, save_animation, save_still

pytestmark = pytest.mark.e2e


def _finished(stack: Stack, keys: Keys, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    job = submit(stack, keys.submitter, path, name=path.name)
    done = wait_terminal(stack, keys.submitter, job["id"])
    assert done["status"] == "SUCCEEDED", done
    url = f"{stack.base}/v1/jobs/{job['id']}/result"
    result: dict[str, Any] = requests.get(url, headers=bearer(keys.submitter), timeout=10).json()
    return job, result


def test_an_image_with_a_face_gets_a_verdict_from_one_frame(stack: Stack, keys: Keys, tmp_path: Path) -> None:
    # As a phone stores it: the pixels turned a quarter counter-clockwise, tagged to be shown turned back. The
    # face is found only in the upright image, and the boxes are in its pixels.
    frame = first_frame(shared_file(FACE_CLIP))
    sideways = np.ascontiguousarray(np.rot90(frame, 1))
    job, result = _finished(stack, keys, save_still(sideways, tmp_path / "face.jpg", orientation=ROTATED_90_CW))
    assert job["content_type"] == "image/jpeg"
    assert result["media"] == "image"
    assert result["verdict"] in ("REAL", "FAKE", "UNCERTAIN")
    assert 0.0 <= result["score"] <= 1.0
    assert set(result["models"]) == {"meso4_df", "mesoinception_df"}
    assert result["frames_sampled"] == 1 and result["faces_found"] >= 1
    assert result["video"]["frames"] == {"requested": 1, "decoded": 1, "with_face": 1, "missing": []}
    tracks = result["tracks"]["tracks"]
    assert len(tracks) == result["faces_found"]
    upright_height, upright_width = frame.shape[:2]
    for track in tracks:
        (detection,) = track["detections"]
        assert detection["frame_index"] == 0 and track["frames"] == 1
        box = detection["box"]
        assert 0 <= box["x1"] < box["x2"] <= upright_width and 0 <= box["y1"] < box["y2"] <= upright_height

    (hook,) = hooks_for(stack, job["id"])
    data = json.loads(hook["body"])["data"]
    assert (data["media"], data["verdict"]) == ("image", result["verdict"])

    # The review page's sheet of what the detectors saw: the image, with its boxes.
    sheet = requests.get(f"{stack.base}/v1/jobs/{job['id']}/frames.jpg", headers=bearer(keys.submitter), timeout=30)
    assert sheet.status_code == 200 and sheet.headers["Content-Type"] == "image/jpeg"
    url = requests.get(f"{stack.base}/v1/jobs/{job['id']}/video-url", headers=bearer(keys.submitter), timeout=10)
    original = requests.get(stack.base + url.json()["url"], timeout=10)
    assert original.headers["Content-Type"] == "image/jpeg"


def test_an_image_without_a_face_is_no_face(stack: Stack, keys: Keys, tmp_path: Path) -> None:
    gradient = np.zeros((480, 640, 3), np.uint8)
    gradient[..., 1] = np.linspace(0, 255, 640, dtype=np.uint8)[None, :]
    _, result = _finished(stack, keys, save_still(gradient, tmp_path / "sky.png"))
    assert (result["media"], result["verdict"], result["score"]) == ("image", "NO_FACE", None)
    assert result["frames_sampled"] == 1 and result["tracks"]["tracks"] == []


def test_a_gif_is_a_video_of_its_frames(stack: Stack, keys: Keys, tmp_path: Path) -> None:
    frames = clip_frames(shared_file(FACE_CLIP), 8, width=480)
    job, result = _finished(stack, keys, save_animation(frames, tmp_path / "clip.gif", delay_ms=100))
    assert job["content_type"] == "image/gif"
    assert result["media"] == "video"
    assert result["verdict"] in ("REAL", "FAKE", "UNCERTAIN")
    video = result["video"]
    assert (video["container"], video["codec"], video["frame_count"]) == ("gif", "gif", 8)
    assert video["duration_s"] == pytest.approx(0.8) and video["fps"] == pytest.approx(10.0)
    assert video["frames"]["requested"] == video["frames"]["decoded"] == 8 and video["frames"]["missing"] == []
    assert max(len(t["detections"]) for t in result["tracks"]["tracks"]) >= 3  # tracked across frames
