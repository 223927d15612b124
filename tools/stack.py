"""The process stack on one machine: the API (gunicorn), the Celery workers and beat, started and stopped together.

``./verity up`` (``python -m tools.stack``) runs it in the foreground: the API, a worker for the ``gpu`` queue, a
worker for the ``io`` queue (webhooks, reaper, recalibration), beat and, with Redis as the broker, a live-stream
worker, each line of their logs prefixed with the process's name; Ctrl-C (or SIGTERM) stops them all and exits 0.
``verity-demo`` starts the same processes through this module with its logs in files.

With no service URLs set the stack is embedded: a SQLite file, Celery's filesystem transport and a local-folder
object store, all under ``VERITY_HOME``; with DATABASE_URL / BROKER_URL / S3_BUCKET set it uses those services.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO

import requests

from core.settings import REPO_ROOT, Settings, get_settings

# Long enough for a worker's warm shutdown to finish a webhook send; a job in flight is redelivered anyway.
STOP_TIMEOUT_S = 20.0


def venv_bin(name: str) -> str:
    """A console script of this environment (the ``./verity`` environment), else the name on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def migrate() -> None:
    """The configured database, migrated to head (the app never creates tables itself)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.attributes["configure_logger"] = False
    command.upgrade(cfg, "head")


@dataclass(frozen=True)
class Service:
    name: str
    argv: tuple[str, ...]


def api_service(bind: str, workers: int = 2) -> Service:
    """gunicorn with the shipped configuration; two workers are plenty on one machine."""
    conf = str(REPO_ROOT / "api" / "gunicorn_conf.py")
    return Service("api", (venv_bin("gunicorn"), "-c", conf, "-b", bind, "-w", str(workers), "api.app:create_app()"))


def worker_service(name: str, queues: str, *pool: str, beat: bool = False) -> Service:
    """A Celery worker on ``queues``; ``pool`` its pool options (``-c N``, ``--pool solo``); ``beat`` embeds beat."""
    argv = [venv_bin("celery"), "-A", "workers.celery_app", "worker", "-Q", queues, *pool, "--loglevel", "INFO"]
    # A node name of its own, so two stacks (or two workers of one) on a host never clash in heartbeats.
    argv += ["-n", f"{name}-{os.getpid()}@%h", *(("-B",) if beat else ())]
    return Service(name, tuple(argv))


def stream_worker_service(name: str = "streams") -> Service:
    """A live-stream worker (``python -m workers.streams``): the pack's models and the stream sessions it holds."""
    return Service(name, (sys.executable, "-m", "workers.streams"))


def streams_possible(settings: Settings) -> bool:
    """Live streams travel through Redis: the embedded (filesystem) broker has none, and no stream worker runs."""
    return settings.broker_url.startswith(("redis://", "rediss://"))


def beat_service() -> Service:
    return Service("beat", (venv_bin("celery"), "-A", "workers.celery_app", "beat", "--loglevel", "INFO"))


def embedded_services(bind: str, streams: bool = False) -> list[Service]:
    """What ``./verity up`` runs: the processes docker-compose.yml runs, sized for one machine; ``streams``: a
    live-stream worker too."""
    return [
        api_service(bind),
        worker_service("gpu", "gpu", "-c", "1"),  # one process per GPU (or the CPU)
        worker_service("io", "io", "-c", "2"),
        beat_service(),
        *([stream_worker_service()] if streams else []),
    ]


class Stack:
    """Started services; each one's output goes to ``log_dir/NAME.log``, or with no log_dir to this process's
    stdout, every line prefixed with the service's name. Use it as a context manager: leaving it stops them."""

    def __init__(
        self, services: Sequence[Service], env: Mapping[str, str] | None = None, log_dir: Path | None = None
    ) -> None:
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pumps: list[threading.Thread] = []
        self._width = max(len(s.name) for s in services)
        self._write_lock = threading.Lock()
        try:
            for service in services:
                self._start(service, env, log_dir)
        except BaseException:
            self.stop()
            raise

    def _start(self, service: Service, env: Mapping[str, str] | None, log_dir: Path | None) -> None:
        if log_dir is None:
            out: IO[bytes] | int = subprocess.PIPE
        else:
            log_dir.mkdir(parents=True, exist_ok=True)
            out = (log_dir / f"{service.name}.log").open("ab")
        proc = subprocess.Popen(
            service.argv,
            cwd=REPO_ROOT,
            env=dict(env) if env is not None else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own session: a terminal's Ctrl-C reaches only this process, which then stops each service once,
            # in order, instead of every process getting the signal at the same moment.
            start_new_session=True,
        )
        if not isinstance(out, int):
            out.close()  # the child holds its own descriptor
        self.procs[service.name] = proc
        if proc.stdout is not None:
            pump = threading.Thread(target=self._pump, args=(service.name, proc.stdout), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def _pump(self, name: str, stream: IO[bytes]) -> None:
        prefix = f"{name:<{self._width}} | ".encode()
        for line in iter(stream.readline, b""):
            with self._write_lock:
                sys.stdout.buffer.write(prefix + line)
                sys.stdout.buffer.flush()

    def exited(self) -> dict[str, int]:
        """The services that have stopped, with their exit codes."""
        return {name: code for name, proc in self.procs.items() if (code := proc.poll()) is not None}

    def ready(self, base: str, workers: bool = False) -> bool:
        """/readyz answers 200; with ``workers``, it also sees a gpu worker consuming (it never fails on that)."""
        try:
            response = requests.get(f"{base}/readyz", timeout=2)
        except requests.RequestException:
            return False
        return response.status_code == 200 and (not workers or response.json()["checks"]["workers"] == "ok")

    def wait_ready(self, base: str, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ready(base):
            if exited := self.exited():
                raise RuntimeError(f"exited during start-up: {_describe(exited)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the API did not become ready within {timeout_s:.0f} s")
            time.sleep(0.5)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM to each service (a warm shutdown for Celery, a graceful one for gunicorn), then SIGKILL to the
        process group of any still running after timeout_s."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self.procs.values():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        for pump in self._pumps:
            pump.join(timeout=5)

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _describe(exited: Mapping[str, int]) -> str:
    return ", ".join(f"{name} (exit {code})" for name, code in exited.items())


def describe_services(settings: Settings) -> str:
    """Where the data goes, for a start-up line (the database URL without its credentials)."""
    return (
        f"database {settings.database_url.split('@')[-1]}, broker {settings.broker_url.split('@')[-1]}, "
        f"storage {settings.s3_bucket or settings.local_storage_dir}"
    )


def banner(base: str) -> str:
    return "\n".join(
        (
            "",
            f"Verity is up:  API {base}   review page {base}/review   API docs {base}/docs",
            "Create a key (in another terminal, with the same environment):",
            "  ./verity verity-keys create --tenant acme --role submitter --name me     # submits jobs",
            "  ./verity verity-keys create --tenant acme --role moderator --name mod    # signs in to the review page",
            f"then: VERITY_URL={base} VERITY_API_KEY=vrt_... ./verity verity submit clip.mp4 --wait",
            "Ctrl-C stops everything.",
            "",
        )
    )


def up(host: str, port: int) -> int:
    """Run the stack in the foreground until SIGINT/SIGTERM (exit 0) or until a service dies (exit 1)."""
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    # People read these logs: text unless the deployment asked for JSON.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "VERITY_LOG_FORMAT": os.environ.get("VERITY_LOG_FORMAT") or "text"}
    settings = get_settings()
    print(f"Verity: {describe_services(settings)}; migrating the database", flush=True)
    migrate()
    base = f"http://{host}:{port}"
    with Stack(embedded_services(f"{host}:{port}", streams=streams_possible(settings)), env=env) as stack:
        announced = False
        while not stop.wait(0.5):
            if exited := stack.exited():
                print(f"\nVerity: stopping, a service exited: {_describe(exited)}", file=sys.stderr, flush=True)
                return 1
            # Once the workers consume too, so the banner comes after their start-up lines, not among them.
            if not announced and stack.ready(base, workers=True):
                print(banner(base), flush=True)
                announced = True
        print("\nVerity: stopping", flush=True)
    print("Verity: stopped", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="./verity up",
        description="Start the API, the gpu and io workers, beat and a stream worker in the foreground.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address the API listens on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="the API's port (default 8000)")
    args = parser.parse_args(argv)
    return up(args.host, args.port)


if __name__ == "__main__":
    raise SystemExit(main())
