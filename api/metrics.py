"""Operations: Prometheus ``/metrics``, request ids and JSON request logs, and the workers' status for /readyz.

Every value on /metrics is computed at scrape time from what all processes share — Postgres (jobs, results,
webhook deliveries, worker heartbeats) and the broker — never from counters held in one process. gunicorn
answers a scrape from any of its workers and the detectors run in other processes (often on other hosts),
so in-process counters would differ per answering process; prometheus_client's multiprocess mode fixes that
only for processes sharing one PROMETHEUS_MULTIPROC_DIR on one host, and needs that directory wiped in step
with every restart. Reading the shared stores gives every API process the same, restart-proof answer.

Stage durations are therefore a *gauge histogram* (OpenMetrics): the distribution of ``results.timings`` of
the jobs finished in the last ``STAGE_WINDOW_S`` (at most ``STAGE_WINDOW_MAX_RESULTS`` of them, newest
first, a bounded primary-key scan). Its buckets go down as jobs leave the window, so use
``histogram_quantile(0.95, verity_stage_duration_seconds_bucket)`` directly, not over ``rate()``.
No metric carries a tenant label.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeHistogramMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select

from core.logs import configure_logging, job_id_var, request_id_var
from core.queue import GPU_QUEUE, IO_QUEUE, broker_transport_options
from core.settings import get_settings
from core.vocabulary import JobStatus
from db import heartbeat
from db.models import Calibration, Job, Result, WebhookDelivery, utcnow
from db.session import session_scope

log = logging.getLogger("verity.requests")
bp = Blueprint("metrics", __name__)

STAGE_WINDOW_S = 3600
STAGE_WINDOW_MAX_RESULTS = 2000
STAGE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
QUEUES = (GPU_QUEUE, IO_QUEUE)
# kombu's Redis transport keeps messages sent with a priority in sibling lists "<queue>\x06\x16<step>".
_REDIS_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
_QUIET_PATHS = ("/metrics", "/healthz", "/readyz")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_JOB_LOCATION = re.compile(r"^/v1/jobs/([0-9a-f-]{36})$")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=utcnow().tzinfo)  # SQLite returns naive UTC


def _jobs() -> Iterator[Metric]:
    with session_scope() as session:
        counts = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
        oldest = session.scalar(select(func.min(Job.created_at)).where(Job.status == JobStatus.QUEUED.value))
    jobs = GaugeMetricFamily("verity_jobs", "Jobs by status, counted in the database.", labels=["status"])
    for status in JobStatus:
        jobs.add_metric([status.value], counts.get(status.value, 0))
    yield jobs
    age = (utcnow() - _aware(oldest)).total_seconds() if oldest else 0.0
    yield GaugeMetricFamily(
        "verity_oldest_queued_job_age_seconds", "Age of the oldest QUEUED job (0 when none).", value=max(0.0, age)
    )


def _histogram(values: Iterable[float]) -> tuple[list[tuple[str, float]], float]:
    ordered = sorted(values)
    buckets, i = [], 0
    for bound in STAGE_BUCKETS:
        while i < len(ordered) and ordered[i] <= bound:
            i += 1
        buckets.append((str(bound), float(i)))
    buckets.append(("+Inf", float(len(ordered))))
    return buckets, float(sum(ordered))


def _stages() -> Iterator[Metric]:
    cutoff = utcnow() - timedelta(seconds=STAGE_WINDOW_S)
    newest = select(Result.timings, Result.created_at).order_by(Result.id.desc()).limit(STAGE_WINDOW_MAX_RESULTS)
    with session_scope() as session:
        rows = session.execute(newest).all()
    stages: dict[str, list[float]] = {}
    models: dict[str, list[float]] = {}
    for timings, created_at in rows:
        if _aware(created_at) < cutoff:
            continue
        for key, seconds in (timings or {}).items():
            if not isinstance(seconds, int | float):
                continue
            if key.startswith("model:"):
                models.setdefault(key.removeprefix("model:"), []).append(float(seconds))
            else:
                stages.setdefault(key, []).append(float(seconds))
    window = f"jobs finished in the last {STAGE_WINDOW_S} s (at most {STAGE_WINDOW_MAX_RESULTS})"
    yield _durations("verity_stage_duration_seconds", f"Pipeline stage durations of the {window}.", "stage", stages)
    yield _durations("verity_model_duration_seconds", f"Per-detector inference time of the {window}.", "model", models)


def _durations(name: str, documentation: str, label: str, series: dict[str, list[float]]) -> Metric:
    family = GaugeHistogramMetricFamily(name, documentation, labels=[label])
    for value, seconds in sorted(series.items()):
        buckets, total = _histogram(seconds)
        family.add_metric([value], buckets, total)
    return family


def _webhooks() -> Iterator[Metric]:
    with session_scope() as session:
        rows = session.execute(
            select(WebhookDelivery.state, WebhookDelivery.event, func.count()).group_by(
                WebhookDelivery.state, WebhookDelivery.event
            )
        )
        family = GaugeMetricFamily(
            "verity_webhook_deliveries",
            "Webhook deliveries by state (pending, delivered, failed, disabled).",
            labels=["state", "event"],
        )
        for state, event, count in rows:
            family.add_metric([state, event], count)
        due = session.scalar(
            select(func.count())
            .select_from(WebhookDelivery)
            .where(WebhookDelivery.state == "pending", WebhookDelivery.next_attempt_at <= utcnow())
        )
    yield family
    yield GaugeMetricFamily("verity_webhook_deliveries_due", "Pending deliveries whose next attempt is due.", value=due)


def queue_depths() -> dict[str, int]:
    settings = get_settings()
    if settings.embedded_broker:
        # kombu's filesystem transport: one file "<ms>_<uuid>.<queue>.msg" per waiting message.
        folder = Path(broker_transport_options(settings)["data_folder_in"])
        names = [p.name.partition(".")[2] for p in folder.iterdir()] if folder.is_dir() else []
        return {q: names.count(f"{q}.msg") for q in QUEUES}
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        return {}
    client = _redis(settings.broker_url)
    return {q: sum(int(client.llen(q + suffix)) for suffix in _REDIS_PRIORITY_SUFFIXES) for q in QUEUES}


@lru_cache(maxsize=1)
def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def _queues() -> Iterator[Metric]:
    family = GaugeMetricFamily("verity_queue_depth", "Messages waiting in the broker, by queue.", labels=["queue"])
    for queue, depth in queue_depths().items():
        family.add_metric([queue], depth)
    yield family


def _workers() -> Iterator[Metric]:
    with session_scope() as session:
        seen = heartbeat.fresh(session)
    # A process whose worker lost its broker still beats; counting it would report a worker that takes no job.
    per_queue = GaugeMetricFamily(
        "verity_worker_processes",
        f"Task-running worker processes with a heartbeat in the last {heartbeat.HEARTBEAT_STALE_S:g} s whose "
        "worker is consuming from the broker.",
        labels=["queue"],
    )
    for queue in QUEUES:
        per_queue.add_metric([queue], sum(1 for s in seen if queue in s.queues and s.consuming))
    yield per_queue
    age = GaugeMetricFamily(
        "verity_worker_heartbeat_age_seconds", "Seconds since each worker process beat.", labels=["worker", "pid"]
    )
    consuming = GaugeMetricFamily(
        "verity_worker_consuming",
        "1 when the worker process's worker is consuming from the broker, 0 when it is alive but not consuming.",
        labels=["worker", "pid"],
    )
    load = GaugeMetricFamily(
        "verity_model_load_seconds",
        "Time the worker process took to load the model pack and face detector.",
        labels=["worker", "pid", "pack", "device"],
    )
    gpu = GaugeMetricFamily(
        "verity_gpu_memory_bytes",
        "GPU memory seen by a detect worker: allocated/reserved by its torch, used/total on the device.",
        labels=["worker", "pid", "device", "kind"],
    )
    for s in seen:
        ids = [s.worker, str(s.pid)]
        age.add_metric(ids, s.age_s)
        consuming.add_metric(ids, 1 if s.consuming else 0)
        if model := s.info.get("model"):
            load.add_metric([*ids, str(model.get("pack")), str(model.get("device"))], model.get("load_seconds", 0.0))
        if memory := s.info.get("gpu"):
            for kind in ("allocated", "reserved", "used", "total"):
                gpu.add_metric([*ids, str(memory.get("device")), kind], memory.get(f"{kind}_bytes", 0))
    yield from (age, consuming, load, gpu)


def _calibration() -> Iterator[Metric]:
    with session_scope() as session:
        version = session.scalar(select(Calibration.version).where(Calibration.status == "active").limit(1))
    family = GaugeMetricFamily(
        "verity_calibration_active", "The active calibration version (1), none when uncalibrated.", labels=["version"]
    )
    family.add_metric([version or "none"], 1)
    yield family


_SOURCES: dict[str, Callable[[], Iterator[Metric]]] = {
    "jobs": _jobs,
    "stages": _stages,
    "webhooks": _webhooks,
    "queues": _queues,
    "workers": _workers,
    "calibration": _calibration,
}


class VerityCollector:
    """One failing source (Redis down, say) leaves the others on the page and sets its error gauge."""

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "verity_metrics_source_error", "1 when a source could not be read at this scrape.", labels=["source"]
        )
        for name, source in _SOURCES.items():
            try:
                metrics = list(source())
            except Exception as exc:
                log.warning("metrics source %s failed: %s", name, exc)
                errors.add_metric([name], 1)
                continue
            errors.add_metric([name], 0)
            yield from metrics
        yield errors


_REGISTRY = CollectorRegistry(auto_describe=False)
_REGISTRY.register(VerityCollector())


@bp.get("/metrics")
def metrics() -> Response:
    return Response(generate_latest(_REGISTRY), mimetype=CONTENT_TYPE_LATEST)


def workers_status() -> str:
    """For /readyz. Never fails readiness: the API accepts and queues jobs with no worker running (they wait
    QUEUED), and tying the API's readiness to the workers would turn a worker outage into an API outage
    (and keep a fresh embedded stack unready until its first worker has started). Alert on
    ``verity_worker_processes == 0`` instead."""
    try:
        with session_scope() as session:
            seen = heartbeat.fresh(session)
    except Exception as exc:
        return f"unknown: {type(exc).__name__}: {str(exc)[:200]}"
    stale = f"{heartbeat.HEARTBEAT_STALE_S:g} s"
    if not seen:
        return f"none seen in {stale}"
    gpu = [s for s in seen if GPU_QUEUE in s.queues or not s.queues]
    if not gpu:
        return f"no {GPU_QUEUE} worker seen in {stale}"
    if not any(s.consuming for s in gpu):
        return f"no {GPU_QUEUE} worker consuming ({len(gpu)} process(es) seen, none reaching the broker)"
    return "ok"


def init_app(app: Flask) -> None:
    """JSON (or text) logs for the API, and a request id plus the job id bound to every line of a request."""
    configure_logging()

    @app.before_request
    def _bind() -> None:
        g.started = time.perf_counter()
        given = request.headers.get("X-Request-ID", "")
        request_id_var.set(given if _REQUEST_ID.match(given) else uuid.uuid4().hex[:16])
        job_id_var.set((request.view_args or {}).get("job_id"))

    @app.after_request
    def _log(response: Response) -> Response:
        response.headers["X-Request-ID"] = request_id_var.get() or ""
        if job_id_var.get() is None and (found := _JOB_LOCATION.match(response.headers.get("Location", ""))):
            job_id_var.set(found.group(1))  # a new job: its id is only known once created
        # The path only, never the query string: media URLs carry a signed token there.
        log.log(
            logging.DEBUG if request.path in _QUIET_PATHS else logging.INFO,
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - g.get("started", time.perf_counter())) * 1000, 1),
            },
        )
        return response

    @app.teardown_request
    def _unbind(_: BaseException | None) -> None:
        request_id_var.set(None)
        job_id_var.set(None)
