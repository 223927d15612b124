"""Riding out a database outage: which errors are transient, and a retry with backoff for repeatable work."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")


def is_transient(exc: BaseException) -> bool:
    """A database error worth retrying: the server restarted, failed over or dropped the connection."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeoutError):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def with_retry(fn: Callable[[], T], retry_s: float, what: str) -> T:
    """Run ``fn``, retrying transient database errors with backoff for up to ``retry_s`` seconds.

    Every caller is safe to repeat: claims and final writes are conditional UPDATEs, so a commit that
    succeeded but whose reply was lost cannot be applied twice.
    """
    deadline = time.monotonic() + retry_s
    delay = 0.5
    while True:
        try:
            return fn()
        except Exception as exc:
            if not is_transient(exc) or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable during %s, retrying in %.1fs: %s", what, delay, str(exc)[:200])
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
