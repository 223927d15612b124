"""Real services a test starts for itself: free ports and readiness waits, scratch Postgres databases migrated
to head, private Redis, Postgres and S3 servers (never the shared ones other people's tests use), and API keys.

The session-wide services (tests/conftest.py), the fault-injection stack and the migration tests all use these,
so there is one way to create, migrate and drop a database and one way to wait for a port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from contextlib import suppress
from pathlib import Path

from core.settings import sqlalchemy_url
from tools.services import (
    database_url,
    moto_s3,
    run_migrations,
    scratch_database,
    wait_port,
    wait_until,
)
from tools.stack import free_port, venv_bin

REPO = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("VERITY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))

# The generic throwaway services are the tools' (tools.services); re-exported for the tests.
__all__ = [
    "database_url",
    "free_port",
    "moto_s3",
    "run_migrations",
    "scratch_database",
    "venv_bin",
    "wait_port",
    "wait_until",
]


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

    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with Session(engine) as session:
            issued = create_key(session, "faults", tenant, "submitter")
            session.commit()
            return issued.plaintext
    finally:
        engine.dispose()
