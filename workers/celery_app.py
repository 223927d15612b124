"""The worker entry point: ``celery -A workers.celery_app worker -Q gpu`` (or ``-Q io``, or ``beat``)."""

from __future__ import annotations

import ctypes
import logging
import sys
from contextvars import Token
from multiprocessing.sharedctypes import RawValue
from typing import Any

from celery import bootsteps
from celery.signals import (
    celeryd_init,
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_process_shutdown,
)
from kombu.utils.url import maybe_sanitize_url

from core.env import SettingsError
from core.logs import configure_logging, job_id_var
from core.manifest import ManifestError, missing_checkpoints
from core.queue import GPU_QUEUE, check_celery_conf, make_celery
from core.settings import get_settings
from core.vocabulary import TaskName
from db import heartbeat
from db.session import dispose_engine_after_fork

try:
    settings = get_settings()  # validates the timeout chain; a worker refuses to start on bad settings
    app = make_celery(settings)
    check_celery_conf(app, settings)
except SettingsError as exc:
    # Celery would bury this under "Unable to load celery application" and a traceback; say it plainly and
    # exit 78 (EX_CONFIG), distinct from a crash.
    print(f"verity worker: refusing to start: {exc}", file=sys.stderr)
    raise SystemExit(78) from None
app.conf.include = ["workers.tasks", "workers.recalibrate_tasks"]

# Set in the main process before the pool forks, so every child knows its node name and queues.
_node: dict[str, str] = {"name": "", "queues": ""}
_job_tokens: dict[str, Token[str | None]] = {}
# Whether this worker's consumer is consuming: written by the main process (where the consumer runs), read by
# the pool processes' heartbeats; shared memory made before the pool forks.
_consuming = RawValue(ctypes.c_bool, False)
# sysexits EX_UNAVAILABLE, not 78 (EX_CONFIG): a supervisor should restart a worker whose broker was down,
# and may well refuse to restart one with a bad configuration.
EXIT_BROKER_UNREACHABLE = 69


class _ConsumingFlag(bootsteps.StartStopStep):
    """A consumer bootstep: starts once the task consumer has started; Celery stops the consumer's steps when
    the broker connection is lost (before reconnecting, which starts them again) and at shutdown."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, parent: Any) -> None:
        _consuming.value = True

    def stop(self, parent: Any) -> None:
        _consuming.value = False

    def shutdown(self, parent: Any) -> None:
        _consuming.value = False


app.steps["consumer"].add(_ConsumingFlag)


@setup_logging.connect
def _logging(loglevel: int | str | None = None, **_: Any) -> None:
    # Connecting here stops Celery configuring logging itself: worker, beat and our code share one format.
    configure_logging(loglevel or logging.INFO)


@celeryd_init.connect
def _remember_node(sender: str, options: dict[str, Any] | None = None, **_: Any) -> None:
    queues = (options or {}).get("queues") or ""
    _node["name"] = sender
    _node["queues"] = queues if isinstance(queues, str) else ",".join(queues)
    if not _node["queues"] or GPU_QUEUE in _node["queues"].split(","):
        _refuse_without_checkpoints()
    _refuse_without_broker()


def _refuse_without_broker() -> None:
    # Left to itself, Celery retries the broker 100 times, backing off to 30 s between tries, while the pool
    # processes already heartbeat. This runs before the pool exists; the consumer connects again afterwards.
    timeout = settings.broker_startup_timeout_s
    with app.connection_for_read() as conn:
        try:
            # kombu takes None (no retry limit) and a float timeout; its stubs are narrower than its code.
            conn.ensure_connection(max_retries=None, timeout=timeout, interval_start=1, interval_step=1, interval_max=5)  # type: ignore[arg-type]
        except Exception as exc:  # any failure to connect means this worker cannot consume
            detail = " ".join(str(exc).split()) or type(exc).__name__
            broker = maybe_sanitize_url(settings.broker_url)
            print(
                f"verity worker: refusing to start: broker {broker} unreachable for {timeout:g} s ({detail}); "
                "check BROKER_URL and the broker, or raise VERITY_BROKER_STARTUP_TIMEOUT_S",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_BROKER_UNREACHABLE) from None


def _refuse_without_checkpoints() -> None:
    # Models load lazily on the first job; a pack whose files are absent would otherwise fail every job it takes.
    try:
        missing = missing_checkpoints(settings.pack_manifest, settings.weights_dir)
    except ManifestError as exc:
        print(f"verity worker: refusing to start: {exc}", file=sys.stderr)
        raise SystemExit(78) from None
    if missing:
        names = ", ".join(p.name for p in missing)
        print(
            f"verity worker: refusing to start: pack {settings.pack_manifest} misses {len(missing)} checkpoint "
            f"file(s) in {missing[0].parent}: {names} (put them there or set VERITY_WEIGHTS_DIR)",
            file=sys.stderr,
        )
        raise SystemExit(78)


@worker_process_init.connect
def _after_fork(sender: str | None = None, **_: Any) -> None:
    dispose_engine_after_fork()
    logging.getLogger("workers").setLevel(logging.INFO)
    _node["name"] = sender or _node["name"]
    heartbeat.start(_node["name"], _node["queues"], lambda: bool(_consuming.value))


@worker_process_shutdown.connect
def _leaving(**_: Any) -> None:
    heartbeat.stop(_node["name"])


@task_prerun.connect
def _bind_job(task_id: str, task: Any, args: tuple[Any, ...] | None = None, **_: Any) -> None:
    # Every log line of a detect task, ours or a library's, carries the job id.
    if task.name == TaskName.DETECT and args:
        _job_tokens[task_id] = job_id_var.set(str(args[0]))


@task_postrun.connect
def _unbind_job(task_id: str, **_: Any) -> None:
    if (token := _job_tokens.pop(task_id, None)) is not None:
        job_id_var.reset(token)
