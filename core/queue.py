"""The Celery app shared by the API (which only sends tasks by name) and the workers (which run them).

Importing this never imports torch: the API enqueues ``verity.detect`` by name.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Queue

from core.env import SettingsError
from core.settings import Settings, get_settings
from core.vocabulary import TaskName

GPU_QUEUE = "gpu"
IO_QUEUE = "io"

# Written to the broker's Redis by the reaper; its absence means Redis lost its data (a restart without
# persistence, a flush), and with it every queued message.
BROKER_EPOCH_KEY = "verity:broker-epoch"


def broker_transport_options(settings: Settings) -> dict[str, Any]:
    if settings.embedded_broker:
        folder = settings.home / "broker"
        for sub in ("queue", "processed", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),  # else kombu writes ./control in the cwd
            "store_processed": False,
        }
    # Redis re-delivers an unacked message after this; it must outlast the lease (checked in Settings).
    return {"visibility_timeout": settings.visibility_timeout_s}


def soft_time_limit_s(task_time_limit_s: int) -> float:
    """The soft limit leaves the task time to record a TIMEOUT failure before the hard kill.

    At most 30 s and at most a tenth of the limit: a flat ``limit - 30`` would be ~1 s for short limits.
    """
    return task_time_limit_s - min(30.0, task_time_limit_s * 0.1)


def make_celery(settings: Settings) -> Celery:
    app = Celery("verity")
    transport = broker_transport_options(settings)
    app.conf.update(
        broker_url=settings.broker_url,
        broker_transport_options=transport,
        # Celery reads the visibility timeout from these too; set it everywhere or it silently uses 1 h.
        result_backend_transport_options=transport,
        broker_connection_retry_on_startup=True,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=soft_time_limit_s(settings.task_time_limit_s),
        task_default_queue=IO_QUEUE,
        task_queues=(Queue(GPU_QUEUE), Queue(IO_QUEUE)),
        task_routes={TaskName.DETECT: {"queue": GPU_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        beat_schedule={
            "reap": {"task": TaskName.REAP, "schedule": timedelta(seconds=settings.reaper_interval_s)},
            "relay-webhooks": {
                "task": TaskName.RELAY_WEBHOOKS,
                "schedule": timedelta(seconds=settings.webhook_relay_interval_s),
            },
        },
        beat_schedule_filename=str(settings.home / "celerybeat-schedule"),
    )
    return app


def check_celery_conf(app: Celery, settings: Settings) -> None:
    """Refuse to run a worker whose Celery configuration breaks the reliability contract (DESIGN §7)."""
    conf = app.conf
    problems = []
    if not settings.embedded_broker:
        for name in ("broker_transport_options", "result_backend_transport_options"):
            got = (conf.get(name) or {}).get("visibility_timeout")
            if got != settings.visibility_timeout_s:
                problems.append(f"{name}.visibility_timeout is {got}, expected {settings.visibility_timeout_s}")
    if not (conf.task_time_limit or 0) < settings.lease_s:
        problems.append(f"task_time_limit {conf.task_time_limit} is not below the lease ({settings.lease_s} s)")
    if not (conf.task_acks_late and conf.task_reject_on_worker_lost):
        problems.append("task_acks_late and task_reject_on_worker_lost must both be on")
    if conf.worker_prefetch_multiplier != 1:
        problems.append(f"worker_prefetch_multiplier is {conf.worker_prefetch_multiplier}, expected 1")
    if problems:
        raise SettingsError("inconsistent Celery configuration: " + "; ".join(problems))


@lru_cache(maxsize=1)
def get_celery() -> Celery:
    return make_celery(get_settings())


def enqueue_detect(job_id: str) -> None:
    get_celery().send_task(TaskName.DETECT, args=[job_id], queue=GPU_QUEUE)


def enqueue_webhook(delivery_id: str) -> None:
    get_celery().send_task(TaskName.DELIVER_WEBHOOK, args=[delivery_id], queue=IO_QUEUE)


def check_broker() -> None:
    with get_celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


def broker_lost_messages() -> bool:
    """True once after the broker's Redis came back empty (or on its first use): queued messages may be gone.

    ``SET NX`` of a marker key: it only succeeds when the key is missing, i.e. Redis lost its data. Other
    transports (the embedded filesystem one keeps its messages on disk) answer False.
    """
    with get_celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        if conn.transport.driver_type != "redis":
            return False
        client = conn.default_channel.client  # type: ignore[attr-defined]  # the redis transport's channel
        return bool(client.set(BROKER_EPOCH_KEY, "1", nx=True))
