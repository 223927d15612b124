"""A stack of API + Celery processes with its own database, broker and settings environment, which a
fault-injection test can kill, stop, restart and inspect."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import requests

from tests.conftest import bearer
from tests.support.services import REPO, PrivateRedis, free_port, venv_bin, wait_until
from tests.support.webhook_receiver import Receiver

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")


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
        argv = [venv_bin("gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "2", "-t", "60", "api.app:create_app()"]
        self._spawn("api", argv)
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
        argv = [venv_bin("celery"), "-A", app, "worker", "-Q", queues, "-c", "1", "--loglevel", "INFO"]
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
        job: dict[str, Any] = wait_until(
            lambda: (j := self.job(job_id))["stage"] in stages and j, timeout_s, f"{job_id} in {stages}", 0.05
        )
        return job

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
