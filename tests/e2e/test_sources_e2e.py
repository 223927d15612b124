"""End to end (issue 13 items 7 and 8): a video submitted by a loopback URL, and one sent through a presigned
upload to the S3 server, each through gunicorn and a real Celery worker to a verdict."""

from __future__ import annotations

import hashlib

import pytest
import requests

from tests.conftest import Keys, bearer, shared_file
from tests.e2e.conftest import Stack, wait_terminal
from tests.support.media_server import Routes, media_server
from tests.support.videos import CLIP

pytestmark = pytest.mark.e2e


def test_a_loopback_url_is_fetched_by_the_worker_and_gets_a_verdict(stack: Stack, keys: Keys) -> None:
    clip = shared_file(CLIP).read_bytes()
    with media_server(Routes({"/clip.mp4": clip})) as url:
        response = requests.post(
            f"{stack.base}/v1/jobs",
            files={"source_url": (None, f"{url}/clip.mp4")},
            headers=bearer(keys.submitter),
            timeout=30,
        )
        assert response.status_code == 202, response.text
        job = wait_terminal(stack, keys.submitter, response.json()["id"])
    assert job["status"] == "SUCCEEDED", job
    assert job["sha256"] == hashlib.sha256(clip).hexdigest() and job["size_bytes"] == len(clip)
    result = requests.get(f"{stack.base}/v1/jobs/{job['id']}/result", headers=bearer(keys.submitter), timeout=10)
    assert result.json()["verdict"] in ("REAL", "FAKE", "UNCERTAIN", "NO_FACE")


def test_a_presigned_upload_gets_a_verdict(stack: Stack, keys: Keys) -> None:
    from client.api import VerityClient

    path = shared_file(CLIP)
    with VerityClient(stack.base, keys.submitter) as verity:
        job = verity.submit_presigned(path)
    done = wait_terminal(stack, keys.submitter, job["id"])
    assert done["status"] == "SUCCEEDED", done
    assert done["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
