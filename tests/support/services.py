"""Real services a test starts for itself: free ports and readiness waits, scratch Postgres databases migrated
to head, private Redis, Postgres and S3 servers (never the shared ones other people's tests use), and API keys.

The session-wide services (tests/conftest.py), the fault-injection stack and the migration tests all use these,
so there is one way to create, migrate and drop a database and one way to wait for a port.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("VERITY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))


def venv_bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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

    cfg = Config(str(REPO / "alembic.ini"))
    cfg.attributes["database_url"] = url.replace("postgresql://", "postgresql+psycopg://", 1)
    cfg.attributes["configure_logger"] = False
    (command.downgrade if downgrade else command.upgrade)(cfg, revision)


@contextmanager
def scratch_database(admin_url: str, name: str | None = None, migrate: bool = True) -> Iterator[str]:
    """A fresh database (migrated to head unless told not to) that is dropped afterwards, open connections
    and all; yields its postgresql:// URL."""
    import psycopg  # here, not at the top: tests/conftest.py imports this module for the pure tier too

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


class PrivateRedis:
    """A throwaway redis-server without persistence: a restart loses every message, like a crashed broker."""

    def __init__(self, logdir: Path) -> None:
        if not shutil.which("redis-server"):
            raise RuntimeError("redis-server is not installed")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.logdir = logdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.logdir / f"redis-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        wait_port(self.port, up=False)

    def restart(self) -> None:
        self.kill()
        self.start()


class PrivatePostgres:
    """A throwaway Postgres cluster on a random port (initdb refuses root, so it runs as `postgres` then)."""

    def __init__(self) -> None:
        if not (PG_BIN / "initdb").exists():
            raise RuntimeError(f"no Postgres binaries in {PG_BIN}")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="verity-pg-"))
        self.as_user = os.geteuid() == 0
        if self.as_user:
            shutil.chown(self.dir, "postgres", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self._run("initdb", "-D", str(self.dir / "data"), "-U", "postgres", "--auth=trust", "-E", "UTF8")

    def _run(self, tool: str, *args: str) -> None:
        cmd = [str(PG_BIN / tool), *args]
        if self.as_user:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120)

    def start(self) -> None:
        opts = f"-p {self.port} -k /tmp -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-o", opts, "-l", str(self.dir / "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.dir / "data"), "-m", "fast", "-w", "stop")

    def destroy(self) -> None:
        with suppress(subprocess.CalledProcessError):
            self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateS3:
    """An S3 server of the test's own (tests/support/s3_server.py) that keeps its objects across a stop and a
    start on the same port, as a real store with a disk does; stopped, its port refuses connections."""

    bucket = "verity-faults"

    def __init__(self, logdir: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.logdir = logdir
        self.data = logdir / f"s3-{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def env(self) -> dict[str, str]:
        return {"S3_ENDPOINT_URL": self.url, "S3_BUCKET": self.bucket}

    def start(self) -> None:
        argv = [sys.executable, "-m", "tests.support.s3_server", "--port", str(self.port), "--data", str(self.data)]
        log = (self.logdir / f"s3-{self.port}.log").open("ab")
        self.proc = subprocess.Popen([*argv, "--bucket", self.bucket], cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # the server writes its objects to disk, then exits
            self.proc.wait(timeout=120)
            self.proc = None
        wait_port(self.port, up=False)

    def objects(self) -> set[str]:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, region_name="us-east-1")
        pages = s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        return {entry["Key"] for page in pages for entry in page.get("Contents", [])}


def make_key(database_url: str, tenant: str = "faults") -> str:
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from db.apikeys import create_key

    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as session:
            issued = create_key(session, "faults", tenant, "submitter")
            session.commit()
            return issued.plaintext
    finally:
        engine.dispose()
