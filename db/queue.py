"""The Celery app shared by the API (which only sends tasks by name) and the workers (which run them).

Importing this never imports torch: the API enqueues ``verity.detect`` by name.
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from celery import Celery
from kombu import Queue

from db.settings import Settings, get_settings

DETECT_TASK = "verity.detect"
DELIVER_WEBHOOK_TASK = "verity.deliver_webhook"
REAP_TASK = "verity.reap"
RELAY_WEBHOOKS_TASK = "verity.relay_webhooks"

GPU_QUEUE = "gpu"
IO_QUEUE = "io"


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
        task_soft_time_limit=max(1, settings.task_time_limit_s - 30),
        task_default_queue=IO_QUEUE,
        task_queues=(Queue(GPU_QUEUE), Queue(IO_QUEUE)),
        task_routes={DETECT_TASK: {"queue": GPU_QUEUE}},
        task_serializer="json",
        accept_content=["json"],
        worker_hijack_root_logger=False,
        beat_schedule={
            "reap": {"task": REAP_TASK, "schedule": timedelta(seconds=settings.reaper_interval_s)},
            "relay-webhooks": {"task": RELAY_WEBHOOKS_TASK, "schedule": timedelta(seconds=15)},
        },
        beat_schedule_filename=str(settings.home / "celerybeat-schedule"),
    )
    return app


@lru_cache(maxsize=1)
def get_celery() -> Celery:
    return make_celery(get_settings())


def enqueue_detect(job_id: str) -> None:
    get_celery().send_task(DETECT_TASK, args=[job_id], queue=GPU_QUEUE)


def enqueue_webhook(delivery_id: str) -> None:
    get_celery().send_task(DELIVER_WEBHOOK_TASK, args=[delivery_id], queue=IO_QUEUE)


def check_broker() -> None:
    with get_celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


# Fits a new calibration version from moderator feedback (workers/recalibrate_tasks.py; io queue).
RECALIBRATE_TASK = "verity.recalibrate"
