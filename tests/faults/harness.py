"""Pieces the fault-injection tests break on purpose: private Redis and Postgres servers (never the shared
ones other people's tests use), a scripted webhook receiver, and a stack of API + Celery processes with its
own database, broker and settings that a test can kill, stop, restart and inspect."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.conftest import REPO, bearer, free_port, run_migrations

PG_BIN = Path(os.environ.get("VERITY_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
CLIP = "videos/fake/sberswap_elon.mp4"  # 2.6 s


def _bin(name: str) -> str:
    return str(Path(sys.executable).parent / name)


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
    """An S3 server of the test's own (tests/faults/s3_server.py) that keeps its objects across a stop and a
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
        argv = [sys.executable, "-m", "tests.faults.s3_server", "--port", str(self.port), "--data", str(self.data)]
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


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


class Receiver:
    """An HTTP endpoint on 127.0.0.1 that records each request (with its arrival time) and answers from a script:
    ``replies`` are used in order and the last one repeats."""

    def __init__(self, replies: list[Reply] | None = None) -> None:
        self.replies = replies or [Reply()]
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                outer.received.append(
                    {"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body, "at": time.monotonic()}
                )
                reply = outer.replies[min(len(outer.received) - 1, len(outer.replies) - 1)]
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                try:
                    self.send_response(reply.status)
                    for key, value in reply.headers.items():
                        self.send_header(key, value)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:  # the client timed out and left
                    pass

            do_GET = do_POST  # a followed redirect would arrive as a GET

            def log_message(self, *args: Any) -> None:
                return None

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request: Any, client_address: Any) -> bool:
                outer.connections += 1
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks/verity"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_job(self, job_id: str) -> list[dict[str, Any]]:
        return [h for h in self.received if json.loads(h["body"])["data"]["job_id"] == job_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Canary:
    """A bare TCP listener that only counts connections: any SSRF that reaches 127.0.0.1 shows up here."""

    def __init__(self, host: str = "127.0.0.1", family: socket.AddressFamily = socket.AF_INET) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self.sock.close()


# Timeouts shrunk so faults resolve in seconds; the chain task_time_limit < lease < visibility still holds.
FAST_ENV = {
    "VERITY_TASK_TIME_LIMIT_S": "90",
    "VERITY_LEASE_S": "100",
    "VERITY_VISIBILITY_TIMEOUT_S": "120",
    "VERITY_REAPER_INTERVAL_S": "2",
    "VERITY_HEARTBEAT_INTERVAL_S": "1",
    "VERITY_ENQUEUE_GRACE_S": "2",
    "VERITY_WEBHOOK_RELAY_INTERVAL_S": "1",
    "VERITY_WEBHOOK_BACKOFF_S": "1,2",
    "VERITY_OUTAGE_RETRY_BUDGET_S": "300",
    "VERITY_OUTAGE_MAX_BACKOFF_S": "5",
    "VERITY_MAX_ATTEMPTS": "3",
    "VERITY_WEBHOOK_ALLOW_PRIVATE": "1",
}


class Stack:
    """gunicorn + Celery workers on a database, a broker and a settings environment of their own."""

    def __init__(self, base_env: dict[str, str], database_url: str, broker: PrivateRedis, logs: Path) -> None:
        self.logs = logs
        self.broker = broker
        self.database_url = database_url
        home = logs / "home"
        home.mkdir(exist_ok=True)
        self.env = {
            **os.environ,
            **FAST_ENV,
            **base_env,
            "DATABASE_URL": database_url,
            "BROKER_URL": broker.url,
            "VERITY_HOME": str(home),
            "PYTHONUNBUFFERED": "1",
        }
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.receiver = Receiver()
        self.base = ""
        self.key = ""

    # -- processes ---------------------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            argv,
            cwd=REPO,
            env={**self.env, **(env or {})},
            stdout=(self.logs / f"{name}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a test can kill the worker with its children
        )
        self.procs[name] = proc
        return proc

    def start_api(self) -> None:
        port = free_port()
        self._spawn("api", [_bin("gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "2", "-t", "60", "api.app:create_app()"])
        self.base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return requests.get(f"{self.base}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_until(ready, 60, "the API to answer")

    def start_worker(
        self, name: str, queues: str = "gpu", beat: bool = False, app: str = "workers.celery_app", **env: str
    ) -> subprocess.Popen[bytes]:
        argv = [_bin("celery"), "-A", app, "worker", "-Q", queues, "-c", "1", "--loglevel", "INFO"]
        argv += ["-n", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        if beat:
            argv += ["-B", "-s", str(self.logs / "home" / f"beat-{name}")]
        proc = self._spawn(name, argv, env)
        wait_until(lambda: "ready." in self.log(name) or proc.poll() is not None, 90, f"worker {name} to start")
        assert proc.poll() is None, self.log(name)[-3000:]
        return proc

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def children(self, name: str) -> list[int]:
        """The worker's pool processes (the beat process of a -B worker included)."""
        parent = self.procs[name].pid
        kids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    kids.append(int(entry.name))
        return kids

    def kill_group(self, name: str, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[name]
        os.killpg(proc.pid, sig)
        if sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGQUIT):
            proc.wait(timeout=120)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGCONT)
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for proc in self.procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.receiver.close()

    # -- API -----------------------------------------------------------------------------------------------
    def post_job(self, video: bytes, webhook: bool = True, max_frames: int = 4, **headers: str) -> requests.Response:
        data = {"max_frames": str(max_frames)}
        if webhook:
            data["webhook_url"] = self.receiver.url
        return requests.post(
            f"{self.base}/v1/jobs",
            headers={**bearer(self.key), **headers},
            files={"file": ("clip.mp4", video, "video/mp4")},
            data=data,
            timeout=60,
        )

    def submit(self, video: bytes, **kwargs: Any) -> str:
        response = self.post_job(video, **kwargs)
        assert response.status_code == 202, response.text
        return str(response.json()["id"])

    # -- database ------------------------------------------------------------------------------------------
    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, connect_timeout=5) as conn:
            return list(conn.execute(query, params).fetchall())

    def job(self, job_id: str) -> dict[str, Any]:
        rows = self.sql(
            "SELECT status, stage, attempt, error_code, enqueued_at, lease_expires_at FROM jobs WHERE id = %s", job_id
        )
        status, stage, attempt, code, enqueued_at, lease = rows[0]
        return {
            "status": status,
            "stage": stage,
            "attempt": attempt,
            "error_code": code,
            "enqueued_at": enqueued_at,
            "lease_expires_at": lease,
        }

    def wait_stage(self, job_id: str, stages: tuple[str, ...], timeout_s: float = 120) -> dict[str, Any]:
        return wait_until(
            lambda: (j := self.job(job_id))["stage"] in stages and j, timeout_s, f"{job_id} in {stages}", 0.05
        )

    def wait_terminal(self, job_ids: list[str], timeout_s: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout_s
        while True:
            rows = dict(self.sql("SELECT id::text, status FROM jobs WHERE id = ANY(%s::uuid[])", job_ids))
            if all(rows.get(j) in TERMINAL for j in job_ids) or time.monotonic() > deadline:
                return {j: rows.get(j, "MISSING") for j in job_ids}
            time.sleep(0.5)

    def audit(self, job_ids: list[str], expect_hooks: bool = True) -> dict[str, Any]:
        """Per job: result rows, whether the frame rows are one inference's worth, deliveries, webhook ids seen."""
        out: dict[str, Any] = {}
        for job_id in job_ids:
            results = self.sql("SELECT attempt, faces_found FROM results WHERE job_id = %s", job_id)
            frames = self.sql("SELECT count(*), count(DISTINCT model) FROM frame_scores WHERE job_id = %s", job_id)[0]
            deliveries = self.sql("SELECT event, state FROM webhook_deliveries WHERE job_id = %s", job_id)
            hook_ids = {h["headers"]["webhook-id"] for h in self.receiver.for_job(job_id)}
            faces = results[0][1] if results else 0
            out[job_id] = {
                "results": len(results),
                "one_inference": not results or frames[0] == faces * max(frames[1], 1),
                "deliveries": len(deliveries),
                "webhook_ids": len(hook_ids),
            }
        return out


def duplicated(audit: dict[str, Any]) -> int:
    """Jobs with more than one effect: a second result, a second inference's frame rows, a second webhook id."""
    return sum(
        1
        for a in audit.values()
        if a["results"] > 1 or not a["one_inference"] or a["deliveries"] > 1 or a["webhook_ids"] > 1
    )


@contextmanager
def fresh_database(admin_url: str) -> Iterator[str]:
    name = f"verity_fault_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        run_migrations(url)
        yield url
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
