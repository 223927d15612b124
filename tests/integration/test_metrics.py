"""Operations and review routes against real Postgres, Redis and an S3 server: /metrics computed from the
shared stores, worker heartbeats in /readyz, JSON logs carrying job and request ids, the review JSON, the
timeline PNG, and the video streamed with HTTP Range or a signed URL."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import delete, update

from tests.conftest import REPO, SCRATCH_REDIS_URL, Keys, Services, bearer, shared_file
from tests.support.http import body

CLIP = "videos/fake/sberswap_elon.mp4"  # small (the API checks the container on upload)


@pytest.fixture(scope="module")
def client(services: Services) -> Iterator[FlaskClient]:
    from api.app import create_app

    app = create_app()
    with app.test_client() as c:
        yield c


def scrape(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for s in family.samples
    }


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def upload(client: FlaskClient, key: str, payload: bytes | None = None) -> str:
    payload = payload if payload is not None else shared_file(CLIP).read_bytes()
    response = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(payload), "clip.mp4")},
        headers=bearer(key),
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json
    return str(body(response)["id"])


def finish(job_id: str, verdict: str = "UNCERTAIN", timings: dict[str, float] | None = None) -> None:
    """Store a result and frame scores as the worker's final write would."""
    from db.models import FrameScore, Job, Result
    from db.session import session_scope

    jid = uuid.UUID(job_id)
    with session_scope() as s:
        s.execute(update(Job).where(Job.id == jid).values(status="SUCCEEDED", stage="done", progress=1.0))
        s.add(
            Result(
                job_id=jid,
                attempt=1,
                verdict=verdict,
                score=0.55,
                raw_score=0.55,
                method="weighted_average",
                t_low=0.4,
                t_high=0.7,
                per_model={"meso4_df": {"frames": 2, "aggregated": 0.6, "calibrated": 0.6, "weight": 1.0}},
                tracks={"frames_with_face": 2, "worst_track": 0, "tracks": []},
                overrides={"applied": []},
                faces_found=2,
                frames_sampled=2,
                timings=timings or {"decode": 0.3, "model:meso4_df": 0.02, "total": 1.0},
                model_pack="mesonet@1",
            )
        )
        for i in range(2):
            s.add(
                FrameScore(
                    job_id=jid,
                    frame_index=i * 10,
                    timestamp_s=i * 0.4,
                    track_id=0,
                    box={"x1": 0, "y1": 0, "x2": 10, "y2": 10},
                    face_prob=0.99,
                    model="meso4_df",
                    score=0.5 + i / 10,
                )
            )


# --- /metrics -------------------------------------------------------------------------------------


def test_metrics_needs_no_key_and_counts_from_the_database(client: FlaskClient, keys: Keys) -> None:
    before = scrape(client)
    queued = upload(client, keys.submitter)
    done = upload(client, keys.submitter)
    finish(done, timings={"decode": 0.3, "model:meso4_df": 0.02, "total": 1.0})
    after = scrape(client)

    # Enqueuing may have failed or succeeded; either way the job row counts by its status.
    assert value(after, "verity_jobs", status="SUCCEEDED") == value(before, "verity_jobs", status="SUCCEEDED") + 1
    total = sum(
        value(after, "verity_jobs", status=s) - value(before, "verity_jobs", status=s)
        for s in ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED")
    )
    assert total == 2, queued

    bucket = "verity_stage_duration_seconds_bucket"
    assert value(after, bucket, stage="decode", le="0.5") == value(before, bucket, stage="decode", le="0.5") + 1
    assert value(after, bucket, stage="decode", le="0.25") == value(before, bucket, stage="decode", le="0.25")
    assert value(after, "verity_stage_duration_seconds_gcount", stage="decode") >= 1
    assert value(after, "verity_model_duration_seconds_bucket", model="meso4_df", le="0.025") >= 1
    for source in ("jobs", "stages", "webhooks", "queues", "workers", "calibration"):
        assert value(after, "verity_metrics_source_error", source=source) == 0, source


def test_stage_histogram_ignores_results_outside_the_window(client: FlaskClient, keys: Keys) -> None:
    from api.metrics import STAGE_WINDOW_S
    from db.models import Result, utcnow
    from db.session import session_scope

    before = scrape(client)
    job = upload(client, keys.submitter)
    finish(job, timings={"faces": 42.0})
    with session_scope() as s:
        old = utcnow() - timedelta(seconds=STAGE_WINDOW_S + 60)
        s.execute(update(Result).where(Result.job_id == uuid.UUID(job)).values(created_at=old))
    after = scrape(client)
    assert value(after, "verity_stage_duration_seconds_gcount", stage="faces") == value(
        before, "verity_stage_duration_seconds_gcount", stage="faces"
    )


def test_webhook_outcomes_by_state(client: FlaskClient, keys: Keys) -> None:
    from db.models import WebhookDelivery, utcnow
    from db.session import session_scope

    before = scrape(client)
    job = upload(client, keys.submitter)
    with session_scope() as s:
        s.add(WebhookDelivery(job_id=uuid.UUID(job), event="job.succeeded", url="https://example.com/h", payload={}))
        s.add(
            WebhookDelivery(
                job_id=uuid.UUID(job),
                event="job.failed",
                url="https://example.com/h",
                payload={},
                state="disabled",
                next_attempt_at=utcnow() + timedelta(hours=1),
            )
        )
    after = scrape(client)
    name = "verity_webhook_deliveries"
    assert (
        value(after, name, state="pending", event="job.succeeded")
        == value(before, name, state="pending", event="job.succeeded") + 1
    )
    assert (
        value(after, name, state="disabled", event="job.failed")
        == value(before, name, state="disabled", event="job.failed") + 1
    )
    assert value(after, "verity_webhook_deliveries_due") >= value(before, "verity_webhook_deliveries_due") + 1


def test_queue_depth_from_redis_lists_and_filesystem_files(
    services: Services, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import redis

    from api import metrics
    from core.settings import get_settings

    # A separate Redis database: the e2e worker may be consuming the real queues of this run.
    url = SCRATCH_REDIS_URL
    r = redis.Redis.from_url(url)
    r.flushdb()
    r.lpush("gpu", "a", "b", "c")
    r.lpush("gpu\x06\x169", "high-priority")
    r.lpush("io", "x", "y")
    settings = get_settings()
    try:
        monkeypatch.setattr(metrics, "get_settings", lambda: dataclasses.replace(settings, broker_url=url))
        assert metrics.queue_depths() == {"gpu": 4, "io": 2}
    finally:
        r.flushdb()

    embedded = dataclasses.replace(settings, broker_url="filesystem://", home=tmp_path)
    monkeypatch.setattr(metrics, "get_settings", lambda: embedded)
    folder = tmp_path / "broker" / "queue"
    folder.mkdir(parents=True)
    for name in ("1_a.gpu.msg", "2_b.gpu.msg", "3_c.io.msg", "4_d.gpu.msg.tmp"):
        (folder / name).write_bytes(b"{}")
    assert metrics.queue_depths() == {"gpu": 2, "io": 1}


def test_worker_heartbeat_feeds_readyz_and_metrics(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from db import heartbeat
    from db.models import WorkerHeartbeat, utcnow
    from db.session import session_scope

    # A detect worker that has initialised CUDA (no GPU here: torch.cuda is stubbed).
    cuda = SimpleNamespace(
        is_available=lambda: True,
        is_initialized=lambda: True,
        current_device=lambda: 0,
        get_device_name=lambda device: "Stub GPU",
        mem_get_info=lambda device: (50, 80),
        memory_allocated=lambda device: 10,
        memory_reserved=lambda device: 20,
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))
    assert heartbeat.gpu_memory() == {
        "device": "cuda:0",
        "name": "Stub GPU",
        "allocated_bytes": 10,
        "reserved_bytes": 20,
        "used_bytes": 30,
        "total_bytes": 80,
    }
    worker = f"test-{uuid.uuid4().hex[:8]}@host"
    heartbeat.note_model_load("mesonet@1", "cuda", 1.25)
    heartbeat.beat(worker, "gpu", utcnow(), consuming=True)
    with session_scope() as s:
        s.add(
            WorkerHeartbeat(
                id=f"{worker}/1", worker=worker, pid=1, queues="gpu", seen_at=utcnow(), info={"consuming": True}
            )
        )
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert body(ready)["checks"]["workers"] == "ok"

    samples = scrape(client)
    pid = str(os.getpid())
    assert value(samples, "verity_model_load_seconds", worker=worker, pid=pid, pack="mesonet@1", device="cuda") == 1.25
    for kind, expected in (("allocated", 10), ("reserved", 20), ("used", 30), ("total", 80)):
        assert value(samples, "verity_gpu_memory_bytes", worker=worker, pid=pid, device="cuda:0", kind=kind) == expected
    assert value(samples, "verity_worker_processes", queue="gpu") >= 2
    assert value(samples, "verity_worker_heartbeat_age_seconds", worker=worker, pid=pid) < 30
    assert value(samples, "verity_worker_consuming", worker=worker, pid=pid) == 1

    # Stale rows are not counted; a clean stop removes the row at once.
    with session_scope() as s:
        s.execute(
            update(WorkerHeartbeat)
            .where(WorkerHeartbeat.id == f"{worker}/1")
            .values(seen_at=utcnow() - timedelta(hours=1))
        )
        seen = {(x.worker, x.pid) for x in heartbeat.fresh(s)}
    assert (worker, 1) not in seen and (worker, int(pid)) in seen
    heartbeat.stop(worker)
    with session_scope() as s:
        assert s.get(WorkerHeartbeat, f"{worker}/{pid}") is None


def test_only_consuming_workers_are_counted(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from db import heartbeat
    from db.models import WorkerHeartbeat, utcnow
    from db.session import session_scope

    worker = f"test-{uuid.uuid4().hex[:8]}@host"
    before = scrape(client)
    heartbeat.beat(worker, "gpu,io", utcnow(), consuming=False)  # alive, but its broker is unreachable
    with session_scope() as s:  # a row from a process that does not report the flag cannot say it consumes
        s.add(WorkerHeartbeat(id=f"{worker}/1", worker=worker, pid=1, queues="io", seen_at=utcnow(), info={}))
    after = scrape(client)
    for queue in ("gpu", "io"):
        assert value(after, "verity_worker_processes", queue=queue) == value(
            before, "verity_worker_processes", queue=queue
        )
    for pid in (str(os.getpid()), "1"):  # present, and 0
        assert after[("verity_worker_consuming", (("pid", pid), ("worker", worker)))] == 0
    with session_scope() as s:
        ours = [x for x in heartbeat.fresh(s) if x.worker == worker]
    monkeypatch.setattr(heartbeat, "fresh", lambda session: ours)  # what api.metrics reads
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert body(ready)["checks"]["workers"] == "no gpu worker consuming (1 process(es) seen, none reaching the broker)"
    with session_scope() as s:  # fresh rows would show in other tests' /readyz
        s.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.worker == worker))


def test_a_real_worker_reports_consuming_and_losing_its_broker(
    client: FlaskClient, services: Services, tmp_path: Path
) -> None:
    """A worker on a broker of its own: counted once consuming, not counted (but still beating) while its
    broker is down, counted again once Celery has reconnected."""
    from db import heartbeat
    from db.session import session_scope
    from tests.support.services import PrivateRedis, wait_until

    broker = PrivateRedis(tmp_path)
    broker.start()
    name = f"consuming-{uuid.uuid4().hex[:8]}@host"
    celery = str(Path(sys.executable).parent / "celery")
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [celery, "-A", "workers.celery_app", "worker", "-Q", "io", "-c", "1", "-n", name, "--loglevel", "INFO"],
        cwd=REPO,
        env={**os.environ, "BROKER_URL": broker.url, "VERITY_HOME": str(tmp_path / "home")},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def rows() -> list[heartbeat.Seen]:
        with session_scope() as s:
            return [x for x in heartbeat.fresh(s) if x.worker == name]

    def counted() -> float:
        return value(scrape(client), "verity_worker_processes", queue="io")

    try:
        baseline = counted()
        wait_until(lambda: rows() and all(r.consuming for r in rows()), 90, "a consuming heartbeat")
        assert counted() == baseline + 1, log.read_text()[-3000:]

        broker.kill()
        wait_until(lambda: rows() and not any(r.consuming for r in rows()), 30, "a heartbeat that stopped consuming")
        assert worker.poll() is None, log.read_text()[-3000:]
        assert counted() == baseline

        broker.start()  # the same port: Celery reconnects on its own
        wait_until(lambda: rows() and all(r.consuming for r in rows()), 90, "consuming again after reconnecting")
        assert counted() == baseline + 1
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)
        broker.kill()
    assert not rows(), "a clean stop removes the rows"


def test_readyz_reports_no_workers_without_failing(client: FlaskClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from db import heartbeat

    monkeypatch.setattr(heartbeat, "fresh", lambda session: [])  # what api.metrics reads
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert body(ready)["status"] == "ready"
    assert body(ready)["checks"]["workers"] == "none seen in 60 s"


# --- logs -----------------------------------------------------------------------------------------


def test_json_logs_carry_request_and_job_ids(
    client: FlaskClient, keys: Keys, capsys: pytest.CaptureFixture[str]
) -> None:
    from core.logs import configure_logging

    job = upload(client, keys.submitter)
    configure_logging(fmt="json")  # a handler on the captured stderr
    try:
        response = client.get(f"/v1/jobs/{job}", headers={**bearer(keys.submitter), "X-Request-ID": "req-42"})
        assert response.headers["X-Request-ID"] == "req-42"
        created = upload(client, keys.submitter)
        logging.getLogger("workers.test").warning("plain %s", "line")
    finally:
        configure_logging()
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    access = next(x for x in lines if x.get("request_id") == "req-42")
    assert access["job_id"] == job
    assert access["status"] == 200 and access["path"] == f"/v1/jobs/{job}"
    assert {"ts", "level", "logger", "message"} <= set(access)
    assert any(x.get("job_id") == created and x.get("method") == "POST" for x in lines), "a new job's id from Location"
    plain = next(x for x in lines if x["message"] == "plain line")
    assert plain["level"] == "WARNING" and "job_id" not in plain


# --- review JSON, timeline, video -----------------------------------------------------------------


def test_review_queue_job_and_calibration(client: FlaskClient, keys: Keys) -> None:
    job = upload(client, keys.submitter)
    finish(job, verdict="UNCERTAIN")
    assert client.get("/v1/review/queue", headers=bearer(keys.submitter)).status_code == 403
    queue = body(client.get("/v1/review/queue", headers=bearer(keys.moderator)))
    item = next(x for x in queue["uncertain"] if x["id"] == job)
    assert item["verdict"] == "UNCERTAIN" and item["labels"] == {} and item["my_label"] is None
    assert any(x["id"] == job for x in queue["recent"])
    assert client.get("/v1/review/queue", headers=bearer(keys.other_tenant)).status_code == 403

    posted = client.post(
        f"/v1/jobs/{job}/feedback", json={"label": "FAKE", "note": "blend line"}, headers=bearer(keys.moderator)
    )
    assert posted.status_code == 201
    detail = body(client.get(f"/v1/review/jobs/{job}", headers=bearer(keys.moderator)))
    assert detail["result"]["verdict"] == "UNCERTAIN"
    assert [(f["label"], f["mine"]) for f in detail["feedback"]] == [("FAKE", True)]
    queue = body(client.get("/v1/review/queue", headers=bearer(keys.moderator)))
    assert next(x for x in queue["uncertain"] if x["id"] == job)["my_label"] == "FAKE"

    summary = body(client.get("/v1/review/calibration", headers=bearer(keys.moderator)))
    assert set(summary) == {"active"}
    if summary["active"] is not None:
        assert {"version", "held_out", "fitted_on"} <= set(summary["active"])


def test_timeline_png_is_tenant_scoped(client: FlaskClient, keys: Keys) -> None:
    job = upload(client, keys.submitter)
    response = client.get(f"/v1/jobs/{job}/timeline.png", headers=bearer(keys.submitter))
    assert response.status_code == 409
    finish(job)
    response = client.get(f"/v1/jobs/{job}/timeline.png", headers=bearer(keys.submitter))
    assert response.status_code == 200 and response.mimetype == "image/png"
    assert response.data.startswith(b"\x89PNG")
    assert client.get(f"/v1/jobs/{job}/timeline.png", headers=bearer(keys.other_tenant)).status_code == 404


def test_frames_sheet_shows_the_scored_faces(client: FlaskClient, keys: Keys) -> None:
    from PIL import Image

    job = upload(client, keys.submitter, shared_file("videos/real/liveportrait_d0.mp4").read_bytes())
    assert client.get(f"/v1/jobs/{job}/frames.jpg", headers=bearer(keys.submitter)).status_code == 409
    finish(job)
    response = client.get(f"/v1/jobs/{job}/frames.jpg", headers=bearer(keys.submitter))
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    sheet = Image.open(io.BytesIO(response.data))
    assert sheet.width > 2 * 200 and sheet.height > 240, "two frames side by side with captions"
    assert client.get(f"/v1/jobs/{job}/frames.jpg", headers=bearer(keys.other_tenant)).status_code == 404


def test_video_streams_with_range_and_signed_url(client: FlaskClient, keys: Keys) -> None:
    video = shared_file(CLIP).read_bytes()
    job = upload(client, keys.submitter, video)
    url = f"/v1/jobs/{job}/video"
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer(keys.other_tenant)).status_code == 404

    full = client.get(url, headers=bearer(keys.submitter))
    assert full.status_code == 200 and full.data == video
    assert full.mimetype == "video/mp4" and full.headers["Accept-Ranges"] == "bytes"

    part = client.get(url, headers={**bearer(keys.submitter), "Range": "bytes=10-19"})
    assert part.status_code == 206 and part.data == video[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(video)}"
    tail = client.get(url, headers={**bearer(keys.submitter), "Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == video[-5:]
    beyond = client.get(url, headers={**bearer(keys.submitter), "Range": f"bytes={len(video) + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(video)}"

    signed = body(client.get(f"{url}-url", headers=bearer(keys.moderator)))
    assert signed["url"].startswith(f"{url}?token=")
    assert client.get(signed["url"]).data == video, "a signed URL needs no key"
    assert client.get(signed["url"] + "x").status_code == 401
    other = upload(client, keys.submitter)
    assert client.get(signed["url"].replace(job, other)).status_code == 401, "a token is for one job only"
    expired = f"{int(time.time()) - 1}.{signed['url'].rsplit('.', 1)[1]}"
    assert client.get(f"{url}?token={expired}").status_code == 401


def test_review_pages_are_served_with_a_strict_csp(client: FlaskClient) -> None:
    page = client.get("/review")
    assert page.status_code == 200 and page.mimetype == "text/html"
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert b"review.js" in page.data
    job_page = client.get(f"/review/jobs/{uuid.uuid4()}")
    assert job_page.status_code == 200 and b"data-job-id" in job_page.data
    for asset, kind in (("review.js", "javascript"), ("review.css", "css")):
        response = client.get(f"/review/static/{asset}")
        assert response.status_code == 200 and kind in (response.mimetype or "")
        response.close()
