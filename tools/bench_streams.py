"""``python -m tools.bench_streams``: N concurrent live streams at 2 fps against one stream worker on loopback.

Starts its own stack on real services: a scratch Postgres database (migrated), a Redis database index of its own,
gunicorn with the shipped configuration (threads raised so every WebSocket has one) and one stream worker with the
configured pack (``VERITY_PACK``, the default pack unless set). For each N of ``--streams`` (ascending), after an
uncounted warm-up stream, it opens N streams (``updates=frames``) and from N client threads sends the frames of
the test clips over each stream's WebSocket at ``--fps`` for ``--duration`` seconds, timing each frame from its
send to its decision coming back on the same WebSocket. It prints per N: frames sent, decided, dropped (by the
server's backlog), the send -> decision latency p50/p99, and at the end the largest N whose p99 stayed under
``--budget-ms`` (the seed's 200 ms).

The client threads share the CPUs with the server, Postgres and Redis: on a small host they are part of the load.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import requests

from client.api import VerityClient
from client.stream_cli import video_frames
from client.streams import LiveStream, open_stream
from core.settings import REPO_ROOT
from tools.services import DEFAULT_PG_ADMIN, scratch_database, wait_until
from tools.stack import Service, free_port, stream_worker_service, venv_bin
from tools.stack import Stack as Processes

CLIPS = REPO_ROOT.parent / "shared" / "testdata" / "videos"
GUNICORN_CONF = REPO_ROOT / "api" / "gunicorn_conf.py"
Clips = list[list[tuple[float, bytes]]]  # each test clip's (t, JPEG) frames


@dataclass
class StreamRun:
    """One client stream: when each frame went out (by its number) and how long its decision took."""

    stream: LiveStream
    frames: list[tuple[float, bytes]]
    sent_at: dict[int, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    refused: int = 0

    def send(self, fps: float, duration_s: float) -> None:
        start = time.monotonic()
        seq = 0
        while time.monotonic() - start < duration_s:
            _t, image = self.frames[seq % len(self.frames)]
            seq += 1
            self.sent_at[seq] = time.monotonic()
            self.stream.send(image, seq / fps)
            time.sleep(max(0.0, start + seq / fps - time.monotonic()))

    def receive(self) -> None:
        for event in self.stream.decisions(timeout=30):
            if event.get("type") == "decision" and event["seq"] in self.sent_at:
                self.latencies_ms.append((time.monotonic() - self.sent_at[event["seq"]]) * 1000)
            elif event.get("type") == "error":
                self.refused += 1


def clip_frames(fps: float, count: int) -> Clips:
    """The frames of each test clip (real and fake), decoded once at ``fps``."""
    clips = sorted(CLIPS.glob("*/*.mp4"))
    if not clips:
        raise SystemExit(f"no test clips under {CLIPS}")
    return [list(video_frames(str(path), fps, count)) for path in clips[:8]]


class Stack:
    def __init__(self, args: argparse.Namespace, threads: int) -> None:
        import redis

        self._services = contextlib.ExitStack()
        try:
            self.home = Path(self._services.enter_context(tempfile.TemporaryDirectory(prefix="verity-bench-streams-")))
            url = self._services.enter_context(scratch_database(args.pg, f"verity_bench_streams_{os.getpid()}"))
            broker = redis.Redis.from_url(args.redis)
            broker.flushdb()  # our own index: only an earlier run's leftovers are there
            self._services.callback(broker.flushdb)
            self.env = {
                **os.environ,
                "DATABASE_URL": url,
                "BROKER_URL": args.redis,
                "VERITY_HOME": str(self.home),
                "VERITY_RATE_LIMIT_PER_MIN": "1000000",
                "VERITY_STREAM_MAX_SESSIONS_PER_KEY": "1000",
                "VERITY_STREAM_WORKER_SESSIONS": "1000",
                "VERITY_API_THREADS": str(threads),
                "VERITY_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            }
            self.key = self._create_key()
            self.port = free_port()
            api = Service("api", (venv_bin("gunicorn"), "-c", str(GUNICORN_CONF), "-b", f"127.0.0.1:{self.port}",
                                  "-w", "1", "api.app:create_app()"))  # fmt: skip
            self.procs = self._services.enter_context(Processes([api, stream_worker_service()], self.env, self.home))
            wait_until(self._ready, 300, "the API and the stream worker to start", 0.5)
        except BaseException:
            self._services.close()
            raise

    def _ready(self) -> bool:
        if exited := self.procs.exited():
            raise SystemExit(f"exited during start-up: {exited}; logs in {self.home}")
        log = self.home / "streams.log"
        try:
            up = requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False
        return up and log.exists() and "ready." in log.read_text(errors="replace")

    def _create_key(self) -> str:
        code = (
            "from db.apikeys import create_key\nfrom db.session import session_scope\n"
            "with session_scope() as s:\n    print(create_key(s, 'bench', 'bench', 'submitter').plaintext)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip().splitlines()[-1]

    def close(self) -> None:
        self._services.close()


def percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


@contextlib.contextmanager
def streams(client: VerityClient, count: int, clips: Clips) -> Iterator[list[StreamRun]]:
    runs = [StreamRun(open_stream(client, {"kind": "per_frame"}, updates="frames"), clips[i % len(clips)])
            for i in range(count)]  # fmt: skip
    try:
        for run in runs:
            run.stream.connect()
        yield runs
    finally:
        for run in runs:
            run.stream.close()


def measure(client: VerityClient, count: int, args: argparse.Namespace, clips: Clips) -> dict[str, Any]:
    with streams(client, count, clips) as runs:
        readers = [threading.Thread(target=run.receive, daemon=True) for run in runs]
        senders = [threading.Thread(target=run.send, args=(args.fps, args.duration)) for run in runs]
        for thread in [*readers, *senders]:
            thread.start()
        for thread in senders:
            thread.join()
        time.sleep(2.0)  # the last frames' decisions
        views = [run.stream.refresh() for run in runs]
    latencies = [ms for run in runs for ms in run.latencies_ms]
    return {
        "streams": count,
        "sent": sum(len(run.sent_at) for run in runs),
        "decided": len(latencies),
        "dropped": sum(view["frames"]["dropped"] for view in views),
        "refused": sum(run.refused for run in runs),
        "p50_ms": round(percentile(latencies, 50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 1) if latencies else None,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_streams", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", default="1,2,4,8", help="comma-separated N to try, ascending (default 1,2,4,8)")
    parser.add_argument("--fps", type=float, default=2.0, help="frames per second per stream (default 2)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of frames per N (default 15)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of one uncounted stream first (default 5)")
    parser.add_argument("--budget-ms", type=float, default=200.0, help="the p99 latency budget (default 200)")
    parser.add_argument("--pg", default=DEFAULT_PG_ADMIN, help="Postgres admin URL for the scratch database")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="a Redis database of the bench's own")
    parser.add_argument("--stop-over-budget", action=argparse.BooleanOptionalAction, default=True,
                        help="stop at the first N whose p99 is over the budget (default: stop)")  # fmt: skip
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> list[dict[str, Any]]:
    args = parse_args(argv)
    ladder = sorted({int(n) for n in args.streams.split(",") if n.strip()})
    clips = clip_frames(args.fps, int(args.duration * args.fps) + 1)
    stack = Stack(args, threads=2 * max(ladder) + 4)
    rows: list[dict[str, Any]] = []
    try:
        with VerityClient(f"http://127.0.0.1:{stack.port}", stack.key, timeout=60) as client:
            # Not counted: the worker's first frames pay for lazy initialisation (MTCNN's and the models' first calls).
            measure(client, 1, argparse.Namespace(**{**vars(args), "duration": args.warmup}), clips)
            for count in ladder:
                row = measure(client, count, args, clips)
                rows.append(row)
                print(json.dumps(row), file=out, flush=True)
                if args.stop_over_budget and (row["p99_ms"] is None or row["p99_ms"] > args.budget_ms):
                    break
    finally:
        stack.close()
    within = [r["streams"] for r in rows if r["p99_ms"] is not None and r["p99_ms"] <= args.budget_ms]
    cpus = len(os.sched_getaffinity(0))
    print(
        f"largest N with p99 send->decision under {args.budget_ms:g} ms at {args.fps:g} fps: "
        f"{max(within) if within else 'none'} (one stream worker, {cpus} CPUs shared with the clients, the API, "
        "Postgres and Redis)",
        file=out,
    )
    return rows


if __name__ == "__main__":
    main()
