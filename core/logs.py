"""Structured logs shared by the API and the workers: one JSON object per line, carrying ``job_id`` (and the
API's ``request_id``) from context variables, so one job can be followed across gunicorn and Celery.

The format is the settings' ``log_format`` (``VERITY_LOG_FORMAT``: ``json`` or ``text``; unset, ``json`` with real
services and ``text`` in embedded mode, where a person reads the log files).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from core.settings import get_settings

job_id_var: ContextVar[str | None] = ContextVar("verity_job_id", default=None)
request_id_var: ContextVar[str | None] = ContextVar("verity_request_id", default=None)

# Attributes every LogRecord has; anything else was passed with ``extra=`` and goes into the JSON object.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "job_id", "request_id"}
_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"


class ContextFilter(logging.Filter):
    """Copies the bound job and request ids onto every record, for both formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        job_id, request_id = job_id_var.get(), request_id_var.get()
        record.job_id, record.request_id = job_id, request_id
        pairs = (("job", job_id), ("req", request_id))
        record.context = "".join(f" [{name}={value}]" for name, value in pairs if value)
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in ("job_id", "request_id"):
            if value := getattr(record, key, None):
                out[key] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "context" and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


def configure_logging(level: int | str = logging.INFO, fmt: str | None = None) -> None:
    """Replace the root handlers with one stderr handler in ``fmt`` (default: the settings' log_format); idempotent."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    chosen = fmt or get_settings().log_format
    handler.setFormatter(JsonFormatter() if chosen == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
