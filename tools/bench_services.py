"""Throwaway real services for the benchmarks: a migrated scratch Postgres database and moto's S3 server.

No torch here: the API load test (tools.bench_api) uses these too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
from collections.abc import Iterator

from core.settings import REPO_ROOT
from tools.stack import free_port, venv_bin

DEFAULT_PG_ADMIN = os.environ.get("VERITY_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def wait_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout_s} s")


@contextlib.contextmanager
def scratch_database(pg_admin_url: str, name: str) -> Iterator[str]:
    """A fresh database migrated to head; yields its postgresql+psycopg URL and drops it afterwards."""
    import psycopg
    from alembic import command
    from alembic.config import Config

    with psycopg.connect(pg_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        url = (pg_admin_url.rsplit("/", 1)[0] + f"/{name}").replace("postgresql://", "postgresql+psycopg://", 1)
        cfg = Config(str(REPO_ROOT / "alembic.ini"))
        cfg.attributes["database_url"] = url
        cfg.attributes["configure_logger"] = False
        command.upgrade(cfg, "head")
        yield url
    finally:
        with psycopg.connect(pg_admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
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
