"""Liveness of a job's worker: a Postgres advisory lock keyed by the job id, held on a connection of its own.

Postgres drops the lock the moment that connection dies, so a RUNNING job whose lock is free has lost its
worker (SIGKILL, OOM kill, time-limit kill): a redelivered message or the reaper takes it over at once instead
of waiting out the lease. The lock is only a liveness hint; the attempt fence (db/jobs.py) is what keeps a
wrongly presumed-dead worker from writing.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from typing import Any

from sqlalchemy import Connection, func, select

from db.retry import is_transient
from db.session import get_engine

log = logging.getLogger(__name__)


def lock_key(job_id: uuid.UUID) -> int:
    """A signed 64-bit advisory-lock key from the job's UUID (random bits, so collisions are negligible)."""
    return int.from_bytes(job_id.bytes[:8], "big", signed=True)


class OwnerLock:
    """The advisory lock that marks a job's worker as alive; a no-op outside Postgres (embedded mode)."""

    def __init__(self, job_id: uuid.UUID) -> None:
        self.key = lock_key(job_id)
        self._conn: Connection | None = None
        self.enabled = get_engine().dialect.name == "postgresql"

    @property
    def held(self) -> bool:
        return self._conn is not None

    def acquire(self) -> bool:
        """True if this process holds the lock now (re-entrant); False if another live session holds it."""
        if not self.enabled:
            return False
        try:
            if self._conn is None:
                # Autocommit: the lock outlives statements without an idle-in-transaction session for hours.
                self._conn = get_engine().connect().execution_options(isolation_level="AUTOCOMMIT")
            got = bool(self._conn.scalar(select(func.pg_try_advisory_lock(self.key))))
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("could not take the liveness lock: %s", str(exc)[:200])
            self._drop()
            return False
        if not got:
            self._drop()
        return got

    def release(self) -> None:
        # Unlock first: the server drops a closed session's locks only once its backend has noticed the
        # disconnect, so another taker right after could still find the lock held. Closing the connection for
        # good (not back to the pool) then drops whatever is left.
        if self._conn is not None:
            with contextlib.suppress(Exception):  # a broken connection: the server drops the lock with it
                self._conn.scalar(select(func.pg_advisory_unlock_all()))
        self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.invalidate()
                self._conn.close()
            except Exception:  # already broken: the server dropped the lock with it
                pass
            self._conn = None


def owner_alive_sql(session: Any, job_id: uuid.UUID) -> bool:
    """For the reaper: is some live session holding the job's OwnerLock? (A transaction-scoped probe.)"""
    if session.get_bind().dialect.name != "postgresql":
        return True  # no liveness signal: only the lease decides
    free = session.scalar(select(func.pg_try_advisory_xact_lock(lock_key(job_id))))
    return not free
