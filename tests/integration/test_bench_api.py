"""``python -m tools.bench_api`` end to end with tiny counts: the structure of its table and JSON, never timings.

It starts its own scratch database, moto and gunicorn (the shipped config); needs ../shared/testdata for the
upload clip, Postgres, and a Redis database of its own (the test session's scratch one, which it flushes).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ADMIN_URL, SCRATCH_REDIS_URL, shared_file
from tools import bench_api

PHASES = ["GET /healthz", "GET /v1/jobs/<id>", "POST /v1/jobs", "GET /v1/jobs?limit=20"]


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared_file("videos")  # the upload phase sends the smallest test clip
    monkeypatch.setenv("VERITY_HOME", str(tmp_path / "home"))


def _run(tmp_path: Path, *extra: str) -> tuple[dict[str, Any], dict[str, Any], str]:
    out = io.StringIO()
    argv = ["--duration", "1", "--warmup", "0", "--concurrency", "2", "--upload-concurrency", "1"]
    argv += ["--workers", "1", "--pg", PG_ADMIN_URL, "--redis", SCRATCH_REDIS_URL, *extra]
    document = bench_api.main([*argv, "--json", str(tmp_path / "api.json")], out=out)
    saved = json.loads((tmp_path / "api.json").read_text())
    assert saved == json.loads(json.dumps(document, default=str))
    return document, saved, out.getvalue()


def _check_phases(saved: dict[str, Any]) -> None:
    phases = saved["phases"]
    assert [name.split(" (")[0] for name in phases] == PHASES
    for name, row in phases.items():
        assert row["requests"] > 0, name
        assert row["requests_per_s"] > 0 and row["seconds"] > 0, name
        assert 0 <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"], name
        assert row["errors"] == {}, name
        expected = "202" if name.startswith("POST") else "200"
        assert set(row["statuses"]) == {expected} and row["statuses"][expected] == row["requests"], name
        assert row["server_cpu_ms_per_request"] >= 0 and row["host_busy_pct"] >= 0, name
        assert len(row["gunicorn_worker_cpu_s"]) == 1, name  # --workers 1
    assert saved["gunicorn"]["worker_class"] == "gthread" and saved["gunicorn"]["workers"] == 1
    assert "api/gunicorn_conf.py" in saved["gunicorn"]["command"]


def test_python_driver(tmp_path: Path) -> None:
    _, saved, text = _run(tmp_path, "--generator", "python", "--polls", "20", "--uploads", "2")
    assert saved["generator"] == "python" and saved["generator_commands"] == []
    _check_phases(saved)
    assert all(row["requests"] <= 20 for row in saved["phases"].values())
    assert saved["command"].startswith("python -m tools.bench_api --duration 1")
    assert text.splitlines()[0] == saved["command"]
    assert "load generator: python threads" in text and "p99 ms" in text


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed (apt-get install wrk)")
def test_wrk(tmp_path: Path) -> None:
    _, saved, text = _run(tmp_path, "--generator", "wrk", "--phases", "healthz,status,upload,list")
    assert saved["generator"] == "wrk"
    assert len(saved["generator_commands"]) == 4 and all("--latency" in c for c in saved["generator_commands"])
    _check_phases(saved)
    assert "load generator: wrk" in text and all(c in text for c in saved["generator_commands"])
