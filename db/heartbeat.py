"""Worker heartbeats in the database: each task-running Celery process upserts its row every
``HEARTBEAT_INTERVAL_S`` with what only it knows (the model pack's load time, GPU memory) and whether its
worker is consuming from the broker (at once when that changes), and the API reads the fresh rows for
/readyz and /metrics. A live process whose worker has lost its broker still beats, with ``consuming`` false.

A table rather than a Redis key with a TTL: it works the same in embedded mode (SQLite, filesystem broker)
and with real services, and every gunicorn process reads the same rows. Never imports torch: GPU memory is
read only when the process has already imported torch and initialised CUDA (a detect worker).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from db.models import WorkerHeartbeat, utcnow
from db.session import session_scope

log = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 15.0
HEARTBEAT_STALE_S = 60.0  # a row older than this is a process that is gone or wedged
_WATCH_S = 1.0  # how often the beating thread looks at the consuming flag
_FORGET_AFTER = timedelta(days=1)  # rows of dead processes are deleted after this

# What this process learned about itself; the heartbeat copies it into its row.
_facts: dict[str, Any] = {}
_stop = threading.Event()


def note_model_load(pack: str, device: str, seconds: float) -> None:
    """Called once by the process that loaded the model pack (workers/resources.py)."""
    _facts["model"] = {"pack": pack, "device": device, "load_seconds": round(seconds, 3)}


def gpu_memory() -> dict[str, Any] | None:
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    device = torch.cuda.current_device()
    free, total = torch.cuda.mem_get_info(device)
    return {
        "device": f"cuda:{device}",
        "name": torch.cuda.get_device_name(device),
        "allocated_bytes": int(torch.cuda.memory_allocated(device)),
        "reserved_bytes": int(torch.cuda.memory_reserved(device)),
        "used_bytes": int(total - free),  # by every process on the device, as nvidia-smi shows it
        "total_bytes": int(total),
    }


def beat(worker: str, queues: str, started_at: datetime, consuming: bool) -> None:
    info: dict[str, Any] = {**_facts, "consuming": consuming}
    try:
        if (gpu := gpu_memory()) is not None:
            info["gpu"] = gpu
    except Exception as exc:  # a flaky driver query must not stop the heartbeat
        info["gpu_error"] = f"{type(exc).__name__}: {exc}"[:200]
    pid = os.getpid()
    now = utcnow()
    with session_scope() as session:
        session.merge(
            WorkerHeartbeat(
                id=f"{worker}/{pid}"[:255],
                worker=worker[:200],
                pid=pid,
                queues=queues[:200],
                started_at=started_at,
                seen_at=now,
                info=info,
            )
        )
        session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.seen_at < now - _FORGET_AFTER))


def start(worker: str, queues: str, consuming: Callable[[], bool]) -> None:
    """Beat now, then every HEARTBEAT_INTERVAL_S and whenever ``consuming()`` changes, from a daemon thread,
    until ``stop()``."""
    started_at = utcnow()

    def loop() -> None:
        last: bool | None = None
        due = 0.0
        while True:
            current = consuming()
            if current != last or time.monotonic() >= due:
                try:
                    beat(worker, queues, started_at, current)
                except Exception as exc:  # the database may be down for a while; keep trying
                    log.warning("worker heartbeat failed: %s", exc)
                last, due = current, time.monotonic() + HEARTBEAT_INTERVAL_S
            if _stop.wait(_WATCH_S):
                return

    _stop.clear()
    threading.Thread(target=loop, name="verity-heartbeat", daemon=True).start()


def stop(worker: str) -> None:
    """On a clean shutdown the row goes at once, so /readyz does not count a process that left."""
    _stop.set()
    try:
        with session_scope() as session:
            session.execute(delete(WorkerHeartbeat).where(WorkerHeartbeat.id == f"{worker}/{os.getpid()}"))
    except Exception as exc:
        log.warning("could not remove the worker heartbeat: %s", exc)


@dataclass(frozen=True)
class Seen:
    worker: str
    pid: int
    queues: list[str]
    age_s: float
    info: dict[str, Any]

    @property
    def consuming(self) -> bool:
        # A row without the flag comes from a process that cannot say, so it does not count as consuming.
        return self.info.get("consuming") is True


def fresh(session: Session, stale_s: float = HEARTBEAT_STALE_S) -> list[Seen]:
    now = utcnow()
    rows = session.scalars(select(WorkerHeartbeat).where(WorkerHeartbeat.seen_at >= now - timedelta(seconds=stale_s)))
    out = []
    for row in rows:
        seen_at = row.seen_at if row.seen_at.tzinfo else row.seen_at.replace(tzinfo=now.tzinfo)  # SQLite drops tz
        queues = [q for q in row.queues.split(",") if q]
        out.append(Seen(row.worker, row.pid, queues, max(0.0, (now - seen_at).total_seconds()), dict(row.info)))
    return out
