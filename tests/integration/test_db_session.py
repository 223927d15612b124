"""The connection pool and the read scope against real Postgres.

* A pooled connection idle past PING_AFTER_IDLE_S is pinged on checkout, so one the server dropped meanwhile
  is replaced without failing the caller; one used a moment ago is handed out unpinged (no round trip per
  checkout), which is why a connection killed under it fails the next statement instead.
* read_scope runs each statement in autocommit and hands its connection back transactional again.
"""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.settings import sqlalchemy_url
from tests.conftest import PG_ADMIN_URL, Services


def _kill(pid: int) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(100):  # wait until the backend is really gone
            if not admin.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone():
                return
            time.sleep(0.01)


def _backend_after_kill(services: Services, ping_after_idle_s: float, idle_s: float) -> tuple[int, int]:
    from db.session import make_engine

    engine = make_engine(sqlalchemy_url(services.database_url), ping_after_idle_s)
    try:
        with engine.connect() as conn:
            before = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        _kill(before)
        time.sleep(idle_s)
        with engine.connect() as conn:
            after = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
        return before, after
    finally:
        engine.dispose()


def test_a_connection_dropped_while_idle_is_replaced_on_checkout(services: Services) -> None:
    before, after = _backend_after_kill(services, ping_after_idle_s=0.05, idle_s=0.1)
    assert after != before


def test_a_connection_used_a_moment_ago_is_not_pinged(services: Services) -> None:
    with pytest.raises(OperationalError):
        _backend_after_kill(services, ping_after_idle_s=60, idle_s=0)


def test_read_scope_is_autocommit_and_leaves_the_pool_transactional(services: Services) -> None:
    from db.session import get_engine, read_scope, session_scope

    with get_engine().begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS read_scope_probe (n int)"))
        conn.execute(text("DELETE FROM read_scope_probe"))
    with read_scope() as s:
        # Each statement is its own transaction: now() (the transaction's start) moves between two of them.
        first = s.execute(text("SELECT now()")).scalar_one()
        time.sleep(0.01)
        assert s.execute(text("SELECT now()")).scalar_one() > first
        assert s.connection().connection.dbapi_connection.autocommit is True  # type: ignore[union-attr]
    # The same pooled connection is transactional again: a failed unit of work leaves nothing behind.
    with pytest.raises(RuntimeError), session_scope() as s:
        assert s.connection().connection.dbapi_connection.autocommit is False  # type: ignore[union-attr]
        s.execute(text("INSERT INTO read_scope_probe VALUES (1)"))
        raise RuntimeError("roll back")
    with session_scope() as s:
        assert s.execute(text("SELECT count(*) FROM read_scope_probe")).scalar_one() == 0
        s.execute(text("DROP TABLE read_scope_probe"))
