"""Feedback that recalibrates, end to end: labelled clips -> moderator feedback through the API -> fit ->
activate -> a resubmitted clip carries the new version and the calibrated scores it implies -> rollback."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests

from core.scoring.calibration import calibrator_from_dict
from tests.conftest import Keys, bearer, shared_file
from tests.e2e.conftest import Stack, submit, wait_terminal

pytestmark = pytest.mark.e2e

REAL = [
    "videos/real/liveportrait_d0.mp4",
    "videos/real/retalking_3.mp4",
    "videos/real/retalking_5.mp4",
    "videos/real/sberswap_dance.mp4",
    "videos/real/liveportrait_d18.mp4",
]
FAKE = [
    "videos/fake/sberswap_elon.mp4",
    "videos/fake/sberswap_mark.mp4",
    "videos/fake/sadtalker_example_crop.mp4",
    "videos/fake/sberswap_khabenskii.mp4",
    "videos/fake/sadtalker_example_full_crop.mp4",
]
PROBE = "videos/real/retalking_4.mp4"  # never labelled, so no known-content override
ACTIVE_CACHE_S = 6  # the worker re-reads the active version at most every 5 s


def _result(stack: Stack, key: str, job_id: str) -> dict[str, Any]:
    response = requests.get(f"{stack.base}/v1/jobs/{job_id}/result", headers=bearer(key), timeout=10)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def _run(stack: Stack, keys: Keys, clip: str) -> dict[str, Any]:
    job = submit(stack, keys.submitter, shared_file(clip), max_frames="8")
    assert wait_terminal(stack, keys.submitter, job["id"])["status"] == "SUCCEEDED"
    return _result(stack, keys.submitter, job["id"])


def _fit(stack: Stack, keys: Keys) -> dict[str, Any]:
    response = requests.post(
        f"{stack.base}/v1/calibrations",
        json={"min_per_class": 5, "held_out_fraction": 0.2},
        headers=bearer(keys.admin),
        timeout=60,
    )
    assert response.status_code == 201, response.text
    version: dict[str, Any] = response.json()
    return version


def _activate(stack: Stack, keys: Keys, version: str) -> None:
    response = requests.post(f"{stack.base}/v1/calibrations/{version}/activate", headers=bearer(keys.admin), timeout=10)
    assert response.status_code == 200, response.text
    time.sleep(ACTIVE_CACHE_S)


def test_feedback_recalibrates_and_rollback_restores(stack: Stack, keys: Keys) -> None:
    jobs = {clip: _run(stack, keys, clip) for clip in REAL + FAKE}
    for clip, result in jobs.items():
        label = "REAL" if clip in REAL else "FAKE"
        response = requests.post(
            f"{stack.base}/v1/jobs/{result['job_id']}/feedback",
            json={"label": label, "category": "CONFIRMATION"},
            headers=bearer(keys.moderator),
            timeout=10,
        )
        assert response.status_code == 201, response.text

    too_early = requests.post(
        f"{stack.base}/v1/calibrations", json={"min_per_class": 50}, headers=bearer(keys.admin), timeout=60
    )
    assert too_early.status_code == 422 and "50" in too_early.json()["error"]["message"]

    first = _fit(stack, keys)
    assert first["status"] == "candidate"
    _activate(stack, keys, first["version"])
    again = _run(stack, keys, PROBE)
    assert again["calibration_version"] == first["version"]
    full = requests.get(
        f"{stack.base}/v1/calibrations/{first['version']}", headers=bearer(keys.admin), timeout=10
    ).json()
    for name, model in again["models"].items():
        calibrator = calibrator_from_dict(full["calibrators"][name])
        assert model["calibrated"] == pytest.approx(calibrator.apply(model["aggregated"]), abs=1e-9)
    assert again["thresholds"] == {"t_low": full["thresholds"]["t_low"], "t_high": full["thresholds"]["t_high"]}

    png = requests.get(
        f"{stack.base}/v1/calibrations/{first['version']}/reliability.png", headers=bearer(keys.admin), timeout=30
    )
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")

    second = _fit(stack, keys)
    _activate(stack, keys, second["version"])
    assert _run(stack, keys, PROBE)["calibration_version"] == second["version"]

    _activate(stack, keys, first["version"])  # rollback = activating the earlier version
    rolled = _run(stack, keys, PROBE)
    assert rolled["calibration_version"] == first["version"]
    assert rolled["score"] == pytest.approx(again["score"], abs=1e-9)
    assert rolled["verdict"] == again["verdict"]
    listing = requests.get(f"{stack.base}/v1/calibrations", headers=bearer(keys.admin), timeout=10).json()
    assert listing["active"] == first["version"]
