"""Throwaway local services for the benchmarks and the tests: a scratch Postgres database migrated to head, moto's
S3 server on a free port, and waiting for a port or a condition.

No torch here: the API load test (tools.bench_api) and the test suite use these too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from core.settings import REPO_ROOT, sqlalchemy_url
from tools.stack import free_port, venv_bin

DEFAULT_PG_ADMIN = os.environ.get("VERITY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, interval_s: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


def wait_port(port: int, timeout_s: float = 30, up: bool = True) -> None:
    def state() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.3):
                return up
        except OSError:
            return not up

    wait_until(state, timeout_s, f"port {port} {'up' if up else 'down'}", 0.05)


def database_url(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server `admin_url` points at."""
    return admin_url.rsplit("/", 1)[0] + f"/{name}"


def run_migrations(url: str, revision: str = "head", downgrade: bool = False) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = sqlalchemy_url(url)
    cfg.attributes["configure_logger"] = False
    (command.downgrade if downgrade else command.upgrade)(cfg, revision)


@contextmanager
def scratch_database(admin_url: str, name: str | None = None, migrate: bool = True) -> Iterator[str]:
    """A fresh database (migrated to head unless told not to) that is dropped afterwards, open connections
    and all; yields its postgresql:// URL."""
    import psycopg  # here, not at the top: importing this module stays cheap for the pure test tier

    name = name or f"verity_scratch_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = database_url(admin_url, name)
    try:
        if migrate:
            run_migrations(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free loopback port; yields its endpoint URL."""
    port = free_port()
    proc = subprocess.Popen(
        [venv_bin("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
