"""The API process never loads torch, nor the worker, model or tool code: every route is requested in a fresh
process, including the ones that import lazily (the timeline plot, the frame sheet, calibration fitting, replay and
the reliability plot), and then the process's modules are listed. import-linter checks the same statically
(`./verity lint`); this checks what really runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

from flask.testing import FlaskClient

from tests.conftest import REPO, Keys, Services, bearer, shared_file
from tests.support.http import body

# Requests every rule of the app's URL map with every method, as an admin of the job's tenant, then reports the
# status codes and which forbidden top-level packages were imported.
PROBE = r"""
import json, re, sys
from api.app import create_app

job_id, admin = sys.argv[1], sys.argv[2]
app = create_app()
client = app.test_client()
headers = {"Authorization": f"Bearer {admin}"}
statuses = {}
for rule in app.url_map.iter_rules():
    path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", lambda m: job_id if "job" in m.group(1) else "v1", rule.rule)
    for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
        response = client.open(path, method=method, headers=headers, json={} if method != "GET" else None)
        statuses[f"{method} {rule.rule}"] = response.status_code
forbidden = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "torchvision", "timm", "transformers",
                                                             "facenet_pytorch", "workers", "models", "tools"})
print(json.dumps({"statuses": statuses, "forbidden": forbidden}))
"""


def _finished_job_with_video(client: FlaskClient, keys: Keys) -> str:
    """A job uploaded through the API (so its video is in the object store), then given a result and frame rows."""
    from db.models import FrameScore, Job, Result
    from db.session import session_scope

    clip = shared_file("videos/real/dfdc_lynaeydofd.mp4")
    with clip.open("rb") as f:
        response = client.post(
            "/v1/jobs", data={"file": (f, clip.name)}, content_type="multipart/form-data", headers=bearer(keys.admin)
        )
    assert response.status_code == 202, response.get_data(as_text=True)
    job_id = uuid.UUID(body(response)["id"])
    box = {"x1": 10.0, "y1": 10.0, "x2": 90.0, "y2": 90.0}
    with session_scope() as s:
        job = s.get(Job, job_id)
        assert job is not None
        job.status, job.stage, job.progress = "SUCCEEDED", "done", 1.0
        s.add(Result(job_id=job_id, attempt=1, verdict="REAL", score=0.2, method="weighted_average"))
        s.add_all(
            FrameScore(
                job_id=job_id,
                frame_index=i,
                timestamp_s=i / 30,
                track_id=0,
                box=box,
                face_prob=0.99,
                model="meso4",
                score=0.2,
            )
            for i in (0, 30, 60)
        )
    return str(job_id)


def test_every_route_runs_without_torch_or_worker_code(client: FlaskClient, keys: Keys, services: Services) -> None:
    job_id = _finished_job_with_video(client, keys)
    out = subprocess.run(
        [sys.executable, "-c", PROBE, job_id, keys.admin],
        cwd=REPO,
        env={**services.env, "PATH": str(Path(sys.executable).parent), "VERITY_LOG_FORMAT": "text"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    statuses: dict[str, int] = report["statuses"]
    assert report["forbidden"] == [], report["forbidden"]
    assert not {route: code for route, code in statuses.items() if code >= 500}, statuses
    # The lazily importing routes really ran their lazy part, not an early refusal.
    lazy = [r for r in statuses if re.search(r"timeline|frames", r) and r.startswith("GET ")]
    assert lazy and all(statuses[r] == 200 for r in lazy), {r: statuses[r] for r in lazy}
    assert len(statuses) >= 30, f"only {len(statuses)} route/method pairs found"
