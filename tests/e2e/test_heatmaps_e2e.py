"""Heatmaps end to end: a job submitted with explain=true gets per-model heatmaps made by the real worker, stored in
S3 and listed by GET /v1/jobs/<id>/heatmaps, whose PNGs decode; the same clip without it gets none. Another tenant
gets 404 for both routes."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests
from PIL import Image

from client import cli
from client.api import VerityClient
from tests.conftest import Keys, bearer, shared_file
from tests.e2e.conftest import Stack, submit, wait_terminal
from tests.support.images import FACE_CLIP

pytestmark = pytest.mark.e2e

FRAMES = "6"
PER_MEMBER = 3  # VERITY_EXPLAIN_FRAMES' default


def _succeeded(stack: Stack, keys: Keys, job_id: str) -> str:
    done = wait_terminal(stack, keys.submitter, job_id)
    assert done["status"] == "SUCCEEDED", done
    return job_id


def _get(stack: Stack, key: str, path: str) -> requests.Response:
    return requests.get(f"{stack.base}{path}", headers=bearer(key), timeout=30)


def test_explained_job_lists_heatmaps_whose_pngs_decode(stack: Stack, keys: Keys, tmp_path: Path) -> None:
    with VerityClient(stack.base, keys.submitter) as client:
        submitted = client.submit(shared_file(FACE_CLIP), max_frames=int(FRAMES), explain=True)
        job_id = _succeeded(stack, keys, submitted["id"])
        assert client.heatmaps(job_id) == _get(stack, keys.submitter, f"/v1/jobs/{job_id}/heatmaps").json()
    assert _get(stack, keys.submitter, f"/v1/jobs/{job_id}").json()["params"]["explain"] is True
    result = _get(stack, keys.submitter, f"/v1/jobs/{job_id}/result").json()
    assert result["timings"]["explain"] > 0

    listing = _get(stack, keys.submitter, f"/v1/jobs/{job_id}/heatmaps").json()
    heatmaps = listing["heatmaps"]
    members = sorted(result["models"])
    assert sorted({h["member"] for h in heatmaps}) == members
    worst = result["tracks"]["worst_track"]
    for member in members:
        mine = [h for h in heatmaps if h["member"] == member]
        assert 1 <= len(mine) <= PER_MEMBER
        assert [h["score"] for h in mine] == sorted((h["score"] for h in mine), reverse=True)
        assert all(h["track_id"] == worst and h["method"] == "gradcam" and h["error"] is None for h in mine)
    for n, heatmap in enumerate(heatmaps):
        assert heatmap["url"] == f"/v1/jobs/{job_id}/heatmaps/{n}.png"
        response = _get(stack, keys.submitter, heatmap["url"])
        assert response.status_code == 200 and response.headers["Content-Type"] == "image/png"
        image = Image.open(io.BytesIO(response.content))
        image.load()
        assert image.format == "PNG" and image.width > image.height  # the crop beside its overlay

    assert _get(stack, keys.submitter, f"/v1/jobs/{job_id}/heatmaps/{len(heatmaps)}.png").status_code == 404
    # The CLI downloads every PNG.
    assert cli.main(["--url", stack.base, "--api-key", keys.submitter, "heatmaps", job_id, "--out", str(tmp_path)]) == 0
    assert len(list(tmp_path.glob("*.png"))) == len(heatmaps)
    for path in (f"/v1/jobs/{job_id}/heatmaps", heatmaps[0]["url"]):
        response = _get(stack, keys.other_tenant, path)
        assert response.status_code == 404 and response.json()["error"]["code"] == "NOT_FOUND"


def test_a_job_without_explain_has_no_heatmaps(stack: Stack, keys: Keys) -> None:
    clip = shared_file(FACE_CLIP)
    job_id = _succeeded(stack, keys, submit(stack, keys.submitter, clip, name=clip.name, max_frames=FRAMES)["id"])
    assert "explain" not in _get(stack, keys.submitter, f"/v1/jobs/{job_id}").json()["params"]
    assert "explain" not in _get(stack, keys.submitter, f"/v1/jobs/{job_id}/result").json()["timings"]
    assert _get(stack, keys.submitter, f"/v1/jobs/{job_id}/heatmaps").json() == {"job_id": job_id, "heatmaps": []}
    assert _get(stack, keys.submitter, f"/v1/jobs/{job_id}/heatmaps/0.png").status_code == 404
