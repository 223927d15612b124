"""The live-stream simulator against real Postgres: POST /v1/admin/simulate and `verity simulate` over stored jobs
(finished the way a worker finishes one, with per-frame scores) labelled through the feedback route."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from client.cli import main
from core.results import Box, FrameRow, ModelScore
from core.vocabulary import Verdict
from tests.conftest import bearer
from tests.support.http import body
from tests.support.live_api import Tenant, make_job, new_tenant
from tests.support.results import MINIMAL_RESULT

MODELS = ("meso4_df", "mesoinception_df")  # the default pack's members: its aggregators and fusion apply
FPS = 2.0
FRAMES = 20
WINDOW = 8  # shorter than the stored clips (20 frames), so Option A decides
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Lab:
    """A tenant of its own with an admin key, and its stored jobs by file name."""

    tenant: Tenant
    admin: str
    jobs: dict[str, str]


def stored_job(tenant: str, filename: str, score: float) -> str:
    """A finished job whose members scored one face at ``score`` on each of FRAMES frames at FPS."""
    from db import finish, jobs

    job_id = make_job(tenant, "QUEUED", filename=filename)
    rows = [
        FrameRow(i, i / FPS, 0, Box(1.0, 2.0, 30.0, 40.0), 0.99, model, score)
        for i in range(FRAMES)
        for model in MODELS
    ]
    result = replace(
        MINIMAL_RESULT,
        verdict=Verdict.FAKE if score > 0.5 else Verdict.REAL,
        score=score,
        frames_sampled=FRAMES,
        per_model={m: ModelScore("confident", 1.0, FRAMES, score, score) for m in MODELS},
        # 0.4 s of detection and 0.6 s of models for 20 frames: 50 ms a frame.
        timings={"faces": 0.4, "model:meso4_df": 0.3, "model:mesoinception_df": 0.3, "decode": 5.0, "total": 6.0},
    )
    claim = jobs.claim(job_id, lease_s=60)
    assert claim is not None
    assert finish.complete(claim, result, rows, {}) is not False
    return job_id


def label(client: FlaskClient, key: str, job_id: str, value: str) -> None:
    response = client.post(f"/v1/jobs/{job_id}/feedback", json={"label": value}, headers=bearer(key))
    assert response.status_code == 201, response.json


@pytest.fixture(scope="module")
def lab(client: FlaskClient) -> Lab:
    """3 fakes (0.9 on every frame) and 3 reals (0.1) labelled by a moderator, an unlabelled job, and a labelled
    job of another tenant that must not count."""
    from db.apikeys import create_key
    from db.session import session_scope

    tenant = new_tenant()
    with session_scope() as s:
        admin = create_key(s, "sim-admin", tenant.name, "admin").plaintext
    jobs = {f"fake-{i}.mp4": stored_job(tenant.name, f"fake-{i}.mp4", 0.9) for i in range(3)}
    jobs |= {f"real-{i}.mp4": stored_job(tenant.name, f"real-{i}.mp4", 0.1) for i in range(3)}
    for name, job_id in jobs.items():
        label(client, tenant.moderator, job_id, "FAKE" if name.startswith("fake") else "REAL")
    jobs["unlabelled.mp4"] = stored_job(tenant.name, "unlabelled.mp4", 0.9)
    other = new_tenant()
    label(client, other.moderator, stored_job(other.name, "elsewhere.mp4", 0.9), "REAL")
    return Lab(tenant, admin, jobs)


def simulate(client: FlaskClient, lab: Lab, **fields: Any) -> Any:
    return client.post("/v1/admin/simulate", json={"calibration_version": "none", **fields}, headers=bearer(lab.admin))


def test_the_default_comparison_on_labelled_jobs(client: FlaskClient, lab: Lab) -> None:
    response = simulate(client, lab, window=WINDOW, timelines=2)
    assert response.status_code == 200, response.json
    report = body(response)
    assert (report["videos"], report["real"], report["fake"]) == (6, 3, 3)
    assert report["label_source"] == "feedback" and report["calibration_version"] is None
    by_name = {s["name"]: s for s in report["strategies"]}
    assert list(by_name) == ["option_a", "option_b", "whole_file"]
    for s in by_name.values():
        assert (s["tpr"], s["tnr"], s["fpr"], s["uncertain_rate"], s["max_flips"]) == (1.0, 1.0, 0.0, 0.0, 0)
        assert (s["t_low"], s["t_high"]) == (0.35, 0.65)  # the pack's, no calibration version
        assert s["latency"]["per_frame_ms"] == pytest.approx(50.0) and s["latency"]["warnings"] == []
    # 8 frames at 2 fps before the windowed strategies decide; the whole file decides after its 20 frames.
    assert by_name["option_a"]["mean_first_decision_s"] == pytest.approx(4.0)
    assert by_name["option_b"]["mean_first_decision_s"] == pytest.approx(4.0)
    assert by_name["whole_file"]["mean_first_decision_s"] == pytest.approx(10.0)
    assert len(report["timelines"]) == 2
    timeline = report["timelines"][0]
    assert timeline["video_id"] in lab.jobs.values()
    assert [o["strategy"] for o in timeline["outcomes"]] == ["option_a", "option_b", "whole_file"]
    points = timeline["outcomes"][0]["points"]
    assert len(points) == FRAMES and points[WINDOW - 2]["verdict"] is None
    assert points[WINDOW - 1]["verdict"] == ("FAKE" if timeline["label"] == "FAKE" else "REAL")


def test_labels_given_replace_feedback_and_unmatched_ones_are_reported(client: FlaskClient, lab: Lab) -> None:
    missing = str(uuid.uuid4())
    labels = [
        {"filename": "fake-0.mp4", "label": "REAL"},  # deliberately wrong: the caller's labels rule
        {"job_id": lab.jobs["unlabelled.mp4"], "label": "FAKE"},
        {"job_id": missing, "label": "REAL"},
        {"sha256": "f" * 64, "label": "FAKE"},
    ]
    strategies = [{"name": "ema", "kind": "per_frame", "averaging": "ema", "min_frames": 2, "hysteresis": 0}]
    response = simulate(client, lab, labels=labels, strategies=strategies)
    assert response.status_code == 200, response.json
    report = body(response)
    assert (report["videos"], report["real"], report["fake"]) == (2, 1, 1)
    assert report["label_source"] == "labels" and report["unmatched_labels"] == [missing, "f" * 64]
    ema = report["strategies"][0]
    assert (ema["tpr"], ema["fpr"]) == (1.0, 1.0)
    assert ema["mean_first_decision_s"] == pytest.approx(1.0)


def test_option_b_thresholds_are_fitted_saved_and_then_used(client: FlaskClient, lab: Lab) -> None:
    from db.models import Calibration
    from db.session import session_scope

    version = f"sim-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        s.add(
            Calibration(
                version=version,
                status="candidate",
                fusion={"method": "weighted_average"},
                thresholds={"t_low": 0.35, "t_high": 0.65},
            )
        )
    fit = {"target_fpr": 0.34, "uncertain_band": 0.0, "save": True}
    response = simulate(client, lab, window=WINDOW, calibration_version=version, fit_per_frame=fit)
    assert response.status_code == 200, response.json
    fitted = body(response)["fit"]
    assert fitted["strategy"] == "option_b" and fitted["saved_to"] == version and fitted["in_sample"]
    # floor(0.34 × 3) = 1 real may end above T_high; all three reals score 0.1, so T_high sits just above them.
    thresholds = fitted["thresholds"]
    assert thresholds["averaging"] == "mean" and thresholds["t_high"] == pytest.approx(0.1)
    with session_scope() as s:
        row = s.query(Calibration).filter_by(version=version).one()
        assert row.thresholds["per_frame"]["mean"]["t_high"] == thresholds["t_high"]
        assert row.thresholds["t_low"] == 0.35 and row.metrics["per_frame_fits"][0]["by"].startswith("api key")

    again = body(simulate(client, lab, window=WINDOW, calibration_version=version))
    by_name = {s["name"]: s for s in again["strategies"]}
    assert (by_name["option_b"]["t_low"], by_name["option_b"]["t_high"]) == (thresholds["t_low"], thresholds["t_high"])
    assert (by_name["option_a"]["t_low"], by_name["option_a"]["t_high"]) == (0.35, 0.65)


def test_refusals_are_clear(client: FlaskClient, lab: Lab) -> None:
    assert client.post("/v1/admin/simulate", json={}, headers=bearer(lab.tenant.moderator)).status_code == 403
    bad = simulate(client, lab, strategies=[{"name": "a", "kind": "window", "t_low": 0.2}])
    assert bad.status_code == 400 and "t_low and t_high" in body(bad)["error"]["message"]
    # A strategy without a window takes the request's, and is checked against it.
    inherited = simulate(client, lab, window=4, strategies=[{"name": "a", "kind": "window", "min_frames": 6}])
    assert inherited.status_code == 400 and "cannot exceed the window (4)" in body(inherited)["error"]["message"]
    twice = simulate(client, lab, strategies=[{"name": "a", "kind": "window"}, {"name": "a", "kind": "whole_file"}])
    assert twice.status_code == 400 and "unique" in body(twice)["error"]["message"]
    unknown = simulate(client, lab, calibration_version="no-such-version")
    assert unknown.status_code == 404
    nothing = simulate(client, lab, labels=[{"job_id": str(uuid.uuid4()), "label": "FAKE"}])
    assert nothing.status_code == 422 and body(nothing)["error"]["code"] == "NO_LABELLED_JOBS"
    unsaved = simulate(client, lab, fit_per_frame={"save": True})
    assert unsaved.status_code == 409 and body(unsaved)["error"]["code"] == "NO_CALIBRATION_VERSION"
    no_b = simulate(client, lab, strategies=[{"name": "a", "kind": "window"}], fit_per_frame={})
    assert no_b.status_code == 400 and "per_frame" in body(no_b)["error"]["message"]


def test_the_cli_prints_the_table_and_writes_the_picture(
    live_api: str, lab: Lab, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERITY_URL", live_api)
    monkeypatch.setenv("VERITY_API_KEY", lab.admin)
    png = tmp_path / "simulation.png"
    code = main(["simulate", "--window", str(WINDOW), "--calibration-version", "none", "--png", str(png)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "6 labelled videos (3 REAL, 3 FAKE; labels from moderator feedback)" in out
    header = next(line for line in out.splitlines() if "option_a" in line)
    assert header.split() == ["option_a", "option_b", "whole_file"]
    tpr = next(line for line in out.splitlines() if line.startswith("TPR "))
    assert tpr.split()[1:] == ["100.0%"] * 3
    assert png.read_bytes().startswith(PNG_MAGIC) and f"wrote {png}" in err

    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("filename,label\nfake-1.mp4,FAKE\nreal-1.mp4,real\n")
    code = main(
        [
            "simulate",
            "--json",
            "--labels",
            str(csv_path),
            "--calibration-version",
            "none",
            "--strategy",
            "b=per_frame,window=4,min_frames=2",
            "--strategy",
            "whole_file",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    report = json.loads(out)
    assert (report["videos"], report["label_source"]) == (2, "labels")
    assert [s["name"] for s in report["strategies"]] == ["b", "whole_file"]
    assert report["strategies"][0]["mean_first_decision_s"] == pytest.approx(1.0)

    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("name,verdict\nx,FAKE\n")
    assert main(["simulate", "--labels", str(bad_csv)]) == 2
    assert "needs a label column" in capsys.readouterr().err
    monkeypatch.setenv("VERITY_API_KEY", lab.tenant.submitter)
    assert main(["simulate"]) == 3
