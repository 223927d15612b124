"""End to end (issue 13 item 5): what webcams and old files write, through gunicorn and a real Celery worker.

An MJPEG AVI (webcams, IP cameras) and MPEG-4 Part 2 AVIs (DivX/Xvid-era files: mpeg4, msmpeg4v2) made of a real
clip's frames are accepted at upload, decoded in full by the worker (every requested frame, none silently lost)
and get a verdict.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.conftest import Keys, bearer, shared_file
from tests.e2e.conftest import Stack, submit, wait_terminal
from tests.support.images import FACE_CLIP, clip_frames
from tests.support.videos import write_avi

pytestmark = pytest.mark.e2e


@pytest.mark.parametrize("codec", ["mjpeg", "mpeg4", "msmpeg4v2"])
def test_a_legacy_avi_gets_a_verdict_from_every_frame(stack: Stack, keys: Keys, tmp_path: Path, codec: str) -> None:
    # 640 wide: at 320 the faces (~31 px) are too small for every member and the verdict is NOT_APPLICABLE.
    images = clip_frames(shared_file(FACE_CLIP), 24, width=640)
    avi = write_avi(tmp_path / f"{codec}.avi", codec, images=images)
    job = submit(stack, keys.submitter, avi, name=avi.name, max_frames="8")
    assert job["content_type"] == "video/x-msvideo"
    done = wait_terminal(stack, keys.submitter, job["id"])
    assert done["status"] == "SUCCEEDED", done
    result = requests.get(f"{stack.base}/v1/jobs/{job['id']}/result", headers=bearer(keys.submitter), timeout=10)
    view = result.json()
    assert view["media"] == "video" and view["video"]["codec"] == codec
    assert view["verdict"] in ("REAL", "FAKE", "UNCERTAIN"), view["verdict"]
    frames = view["video"]["frames"]
    assert frames["requested"] == frames["decoded"] == 8 and frames["missing"] == []
    assert frames["with_face"] >= 1
