"""The one session module used by both the API and the workers."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

# A pooled connection that sat unused longer than this is pinged before it is handed out (see _ping_when_idle).
PING_AFTER_IDLE_S = 1.0


def _ping_when_idle(engine: Engine, idle_s: float) -> None:
    """Ping a pooled connection on checkout only when it sat idle in the pool for ``idle_s`` or more.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one more round trip per unit of work, a quarter of a
    status poll's. A connection that answered a moment ago is almost surely alive; one idle for a while may
    have been cut (a Postgres restart, an idle timeout on the way), and its ping fails over to a fresh
    connection, so a restart during a lull costs no request. A restart under load, when the connections are
    busy, fails the requests already on a dead connection (503, with Retry-After, like any database error),
    and SQLAlchemy then replaces every connection in that pool.
    """
    dialect: Any = engine.dialect

    @event.listens_for(engine, "checkin")
    def _idle_from(_dbapi_conn, record):  # type: ignore[no-untyped-def]
        record.info["verity_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_conn, record, _proxy):  # type: ignore[no-untyped-def]
        since = record.info.pop("verity_idle_since", None)
        if since is None or time.monotonic() - since < idle_s:
            return  # just connected, or in use a moment ago
        try:
            dialect.do_ping(dbapi_conn)
        except Exception as exc:
            # The pool drops this connection and checks out a fresh one (a refused connect raises as usual).
            raise DisconnectionError(f"pooled connection failed its ping: {exc}") from exc


def make_engine(database_url: str, ping_after_idle_s: float = PING_AFTER_IDLE_S) -> Engine:
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
            # WAL lets the API read while the worker writes; foreign keys are off by default in SQLite.
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    engine = create_engine(
        database_url,
        pool_size=5,
        max_overflow=10,
        pool_timeout=5,
        connect_args={
            # An unreachable server (dropped packets, not a refusal) fails in seconds, not after TCP's ~2 min.
            "connect_timeout": 10,
            # The server notices a vanished client (a lost machine: no FIN) in ~1 min instead of ~2 h, which
            # also frees that worker's liveness locks (db/jobs.py) so its jobs are taken over.
            "options": "-c tcp_keepalives_idle=30 -c tcp_keepalives_interval=10 -c tcp_keepalives_count=3",
        },
    )
    # Turns a Postgres restart into a reconnect instead of a failed request, without a ping per checkout.
    _ping_when_idle(engine, ping_after_idle_s)
    return engine


@lru_cache(maxsize=1)
def get_engine() -> Engine:
    return make_engine(get_settings().database_url)


@lru_cache(maxsize=1)
def get_sessionmaker() -> sessionmaker[Session]:
    return sessionmaker(bind=get_engine(), expire_on_commit=False)


@contextmanager
def session_scope() -> Iterator[Session]:
    """A unit of work: commits only when the block succeeds, rolls back otherwise."""
    session = get_sessionmaker()()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def read_scope() -> Iterator[Session]:
    """A session for reads that need no transaction around them: each statement runs in autocommit (its own
    snapshot), so there is no BEGIN/COMMIT round trip. For one SELECT per request (a status poll, a page of a
    list, an API-key lookup); never write through it, and use ``session_scope`` when several reads must agree.
    """
    session = get_sessionmaker()()
    try:
        session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
        yield session
    finally:
        session.close()


def dispose_engine_after_fork() -> None:
    """A forked worker child must never reuse the parent's pooled connections."""
    if get_engine.cache_info().currsize:
        get_engine().dispose(close=False)
