"""The worker app with the broker's visibility timeout forced far below a task's run time (2 s), and the
unacked-message sweep made fast: the broker redelivers every running task's message to another worker.

Only for the duplicate-delivery fault test; the real app refuses such a chain at startup (Settings.validate).
"""

from __future__ import annotations

from workers.celery_app import app

app.conf.broker_transport_options = {
    **(app.conf.broker_transport_options or {}),
    "visibility_timeout": 2,
    "unacked_restore_interval": 1,
    "unacked_restore_throttle": 1,
}

__all__ = ["app"]
