"""The worker entry point: ``celery -A workers.celery_app worker -Q gpu`` (or ``-Q io``, or ``beat``)."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init

from db.queue import make_celery
from db.session import dispose_engine_after_fork
from db.settings import get_settings

settings = get_settings()  # validates the timeout chain; a worker refuses to start on bad settings
app = make_celery(settings)
app.conf.include = ["workers.tasks", "workers.recalibrate_tasks"]


@worker_process_init.connect
def _after_fork(**_: Any) -> None:
    dispose_engine_after_fork()
    logging.getLogger("workers").setLevel(logging.INFO)
