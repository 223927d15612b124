"""``python -m tools.bench_api``: load-test the HTTP API under gunicorn on loopback.

Starts its own real services — a scratch Postgres database (migrated), moto's S3 server, a Redis database
index of its own (broker and rate-limit counters) — and gunicorn on them with the shipped configuration
(``api/gunicorn_conf.py``), creates an API key, then drives, one phase after another:

1. ``GET /healthz`` (no key, no database): the floor of what gunicorn + Flask cost per request;
2. ``GET /v1/jobs/<id>`` status polls, the request clients repeat most;
3. small uploads (``POST /v1/jobs`` with the smallest test clip, a fresh Idempotency-Key each);
4. ``GET /v1/jobs?limit=20`` list pages (over the jobs the uploads made).

Each phase runs for ``--duration`` seconds (the Python driver also stops after a request count). It prints
requests/s, p50/p90/p99 latency, the status counts and the client errors per phase, and the CPU seconds the
server's processes (gunicorn workers, their Postgres backends) spent per request.

Load generator: ``wrk`` when it is on PATH (``apt-get install wrk``; C, epoll, a Lua script adds the key and
counts statuses), else a Python-thread driver (http.client). On a small host the generator shares the CPUs
with the server, and a Python one can be the bottleneck itself: the output says which one ran.

The per-key rate limit is set far above what a run can reach (``--rate-limit``), so the limiter's Redis round
trip runs on every authenticated request as in production, without ever answering 429.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import json
import os
import re
import resource
import secrets
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from core.settings import REPO_ROOT
from tools.services import DEFAULT_PG_ADMIN, moto_s3, scratch_database, wait_port
from tools.stack import Service, free_port, venv_bin
from tools.stack import Stack as Processes

Request = Callable[[http.client.HTTPConnection], int]
GUNICORN_CONF = REPO_ROOT / "api" / "gunicorn_conf.py"
# Far above anything a run reaches: the limiter's Redis round trip runs, it never answers 429.
UNREACHABLE_RATE_LIMIT = 1_000_000_000
LIST_LIMIT = 20
_CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- CPU accounting -------------------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads); 0 once it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def _postgres_backends(database: str) -> list[int]:
    """The server processes of every connection to ``database`` (their title names it)."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            title = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if title.startswith("postgres: ") and f" {database} " in title:
                found.append(int(cmdline.parent.name))
    return found


def _host_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


def _redis_cpu_s(client: Any) -> float:
    try:
        info = client.info("cpu")
    except Exception:
        return 0.0
    return float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0))


def _own_cpu_s() -> float:
    """CPU seconds of this process (the Python driver's threads) and of its finished children (wrk)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class CpuMeter:
    """CPU seconds over one phase: the gunicorn workers, the Postgres backends serving them, Redis, moto's S3
    server (this process's other child), the load generator, and the whole host (whatever else runs on it
    shows as ``other``)."""

    gunicorn_pid: int
    database: str
    redis: Any
    start: dict[str, dict[int, float]] = field(default_factory=dict)
    start_totals: dict[str, float] = field(default_factory=dict)
    wall_start: float = 0.0

    def _sample(self) -> dict[str, dict[int, float]]:
        return {
            "gunicorn": {p: _proc_cpu_s(p) for p in [self.gunicorn_pid, *_children(self.gunicorn_pid)]},
            "postgres": {p: _proc_cpu_s(p) for p in _postgres_backends(self.database)},
            "moto": {p: _proc_cpu_s(p) for p in _children(os.getpid()) if p != self.gunicorn_pid},
        }

    def _totals(self) -> dict[str, float]:
        busy, _ = _host_busy()
        return {"redis": _redis_cpu_s(self.redis), "generator": _own_cpu_s(), "host": busy / _CLK_TCK}

    def begin(self) -> None:
        self.start = self._sample()
        self.start_totals = self._totals()
        self.wall_start = time.perf_counter()

    def end(self) -> dict[str, Any]:
        now, totals = self._sample(), self._totals()
        wall = time.perf_counter() - self.wall_start
        out = {
            f"{name}_cpu_s": sum(v - self.start[name].get(p, 0.0) for p, v in pids.items())
            for name, pids in now.items()
        }
        out.update({f"{name}_cpu_s": totals[name] - self.start_totals[name] for name in ("redis", "generator")})
        # Per gunicorn worker: kept-alive connections stay with the worker that accepted them, so one busy and
        # one idle worker (a lopsided accept) shows here and caps a phase at about one CPU.
        per_worker = [
            round(v - self.start["gunicorn"].get(p, 0.0), 2)
            for p, v in now["gunicorn"].items()
            if p != self.gunicorn_pid
        ]
        host = totals["host"] - self.start_totals["host"]
        out["other_cpu_s"] = max(0.0, host - sum(out.values()))
        out["host_cpu_s"] = host
        out = {k: round(v, 2) for k, v in out.items()}
        # Of the host's CPUs, how busy over the phase: ours plus whatever else runs on the machine.
        out["host_busy_pct"] = round(100 * host / (wall * len(os.sched_getaffinity(0))), 1) if wall else 0.0
        out["other_busy_pct"] = round(100 * out["other_cpu_s"] / (wall * len(os.sched_getaffinity(0))), 1)
        return {**out, "gunicorn_worker_cpu_s": sorted(per_worker, reverse=True)}


# --- the Python-thread driver ---------------------------------------------------------------------------


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)

        def pct(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 3) if lat else None

        return {
            "requests": len(lat),
            "seconds": round(self.seconds, 3),
            "requests_per_s": round(len(lat) / self.seconds, 1) if self.seconds else None,
            "p50_ms": pct(0.50),
            "p90_ms": pct(0.90),
            "p99_ms": pct(0.99),
            "max_ms": round(lat[-1], 3) if lat else None,
            "mean_ms": round(statistics.fmean(lat), 3) if lat else None,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors": dict(self.errors),
        }


def drive(request: Request, port: int, count: int, duration_s: float, concurrency: int) -> dict[str, Any]:
    """``count`` requests (or until ``duration_s``) from ``concurrency`` threads, each with its own keep-alive
    connection (reopened when the server closes it)."""
    phase = Phase("")
    lock = threading.Lock()
    issued = 0
    deadline = time.perf_counter() + duration_s

    def worker() -> None:
        nonlocal issued
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while True:
            with lock:
                if issued >= count or time.perf_counter() > deadline:
                    break
                issued += 1
            start = time.perf_counter()
            try:
                status = request(conn)
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                with lock:
                    phase.errors[type(exc).__name__] += 1
                continue
            elapsed = (time.perf_counter() - start) * 1000
            with lock:
                phase.latencies_ms.append(elapsed)
                phase.statuses[status] += 1
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.seconds = time.perf_counter() - start
    return phase.summary()


def _send(conn: http.client.HTTPConnection, method: str, path: str, headers: dict[str, str], body: bytes | None) -> int:
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    response.read()
    if response.getheader("Connection", "").lower() == "close":
        conn.close()  # a sync gunicorn worker closes after each response
    return response.status


def _get(path: str, headers: dict[str, str]) -> Request:
    return lambda conn: _send(conn, "GET", path, headers, None)


def _upload(key: str, body: bytes, content_type: str) -> Request:
    def request(conn: http.client.HTTPConnection) -> int:
        # A fresh Idempotency-Key each time: every upload is a new job, never a replay.
        headers = {"Authorization": f"Bearer {key}", "Content-Type": content_type, "Idempotency-Key": uuid.uuid4().hex}
        return _send(conn, "POST", "/v1/jobs", headers, body)

    return request


def multipart(filename: str, payload: bytes) -> tuple[bytes, str]:
    boundary = secrets.token_hex(16)
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
            "Content-Type: video/mp4\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


# --- wrk ------------------------------------------------------------------------------------------------

# wrk runs this in one Lua state per thread (init, request, response) plus one for setup/done, so the status
# counts are gathered from each thread in done(). Without a request() function wrk sends one prepared
# request over and over (GET phases); uploads need one to give each request its own Idempotency-Key.
_WRK_LUA = r"""
local threads = {}
statuses = {}
counter = 0

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  if AUTH ~= "" then wrk.headers["Authorization"] = AUTH end
  if BODY_FILE ~= "" then
    local f = assert(io.open(BODY_FILE, "rb"))
    upload_body = f:read("*a")
    f:close()
    wrk.headers["Content-Type"] = CONTENT_TYPE
  end
end

if BODY_FILE ~= "" then
  function request()
    counter = counter + 1
    wrk.headers["Idempotency-Key"] = NONCE .. "-" .. tid .. "-" .. counter
    return wrk.format("POST", nil, nil, upload_body)
  end
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  for _, thread in ipairs(threads) do
    for code, n in pairs(thread:get("statuses")) do
      merged[code] = (merged[code] or 0) + n
    end
  end
  local parts = {}
  for code, n in pairs(merged) do table.insert(parts, string.format('"%d": %d', code, n)) end
  local e = summary.errors
  io.write(string.format(
    '@@verity@@ {"requests": %d, "duration_us": %d, "statuses": {%s}, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %f}\n',
    summary.requests, summary.duration, table.concat(parts, ", "),
    e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal of ASCII text is a valid Lua string literal


@dataclass
class Wrk:
    binary: str
    threads: int
    folder: Path
    commands: list[str] = field(default_factory=list)

    def run(
        self,
        url: str,
        duration_s: float,
        concurrency: int,
        auth: str = "",
        body: bytes | None = None,
        content_type: str = "",
    ) -> dict[str, Any]:
        script = self.folder / f"phase{len(self.commands)}.lua"
        body_file = ""
        if body is not None:
            body_file = str(self.folder / f"body{len(self.commands)}.bin")
            Path(body_file).write_bytes(body)
        prelude = "".join(
            f"{name} = {_lua_string(value)}\n"
            for name, value in (
                ("AUTH", auth),
                ("BODY_FILE", body_file),
                ("CONTENT_TYPE", content_type),
                ("NONCE", secrets.token_hex(8)),
            )
        )
        script.write_text(prelude + _WRK_LUA, encoding="utf-8")
        threads = max(1, min(self.threads, concurrency))
        seconds = max(1, round(duration_s))
        command = [
            self.binary,
            f"-t{threads}",
            f"-c{concurrency}",
            f"-d{seconds}s",
            "--timeout",
            "30s",
            "--latency",
            "-s",
            str(script),
            url,
        ]
        self.commands.append(shlex.join(command))
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        found = re.search(r"^@@verity@@ (.*)$", done.stdout, re.MULTILINE)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]} {done.stderr[-2000:]}")
        raw = json.loads(found.group(1))
        seconds_run = raw["duration_us"] / 1e6
        errors = {k: v for k, v in raw["errors"].items() if v}
        return {
            "requests": raw["requests"],
            "seconds": round(seconds_run, 3),
            "requests_per_s": round(raw["requests"] / seconds_run, 1) if seconds_run else None,
            "p50_ms": raw["p50_us"] / 1000,
            "p90_ms": raw["p90_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "max_ms": raw["max_us"] / 1000,
            "mean_ms": round(raw["mean_us"] / 1000, 3),
            "statuses": dict(sorted(raw["statuses"].items())),
            "errors": errors,
        }


# --- the stack ------------------------------------------------------------------------------------------


def gunicorn_command(args: argparse.Namespace, port: int) -> list[str]:
    """The shipped configuration (api/gunicorn_conf.py) unless --no-config; explicit options override it."""
    command = [venv_bin("gunicorn")]
    if args.config:
        command += ["-c", str(args.config)]
    command += ["-b", f"127.0.0.1:{port}"]
    if args.workers:
        command += ["-w", str(args.workers)]
    if args.worker_class:
        command += ["-k", args.worker_class]
    if args.threads:
        command += ["--threads", str(args.threads)]
    return [*command, "api.app:create_app()"]


class Stack:
    """Scratch Postgres database + moto S3 + a Redis database index of its own + gunicorn; close() ends them all."""

    def __init__(self, args: argparse.Namespace) -> None:
        import redis

        self._services = contextlib.ExitStack()
        try:
            self.home = Path(self._services.enter_context(tempfile.TemporaryDirectory(prefix="verity-bench-api-")))
            self.database = f"verity_bench_api_{os.getpid()}"
            url = self._services.enter_context(scratch_database(args.pg, self.database))
            endpoint = self._services.enter_context(moto_s3())
            broker = redis.Redis.from_url(args.redis)
            broker.flushdb()  # our own index: only an earlier run's leftovers are there
            self._services.callback(broker.flushdb)
            self.env = {
                **os.environ,
                "DATABASE_URL": url,
                "BROKER_URL": args.redis,
                "S3_BUCKET": "verity-bench-api",
                "S3_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "bench",
                "AWS_SECRET_ACCESS_KEY": "bench",
                "VERITY_HOME": str(self.home),
                "VERITY_RATE_LIMIT_PER_MIN": str(args.rate_limit),
                "VERITY_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            }
            self.key = self._create_key_and_bucket()
            self.port = free_port()
            self.command = gunicorn_command(args, self.port)
            api = self._services.enter_context(Processes([Service("api", tuple(self.command))], self.env, self.home))
            self.gunicorn = api.procs["api"]
            self.log_path = self.home / "api.log"
            wait_port(self.port)
        except BaseException:
            self._services.close()
            raise

    def _create_key_and_bucket(self) -> str:
        # In a child process with the stack's environment, so this process's settings and engine caches stay clean.
        code = (
            "from db.apikeys import create_key\nfrom db.session import session_scope\n"
            "from core.storage import get_store\nget_store().ensure_bucket()\n"
            "with session_scope() as s:\n    print(create_key(s, 'bench', 'bench', 'submitter').plaintext)\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout.strip().splitlines()[-1]

    def log_tail(self, chars: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-chars:]
        return ""

    def close(self) -> None:
        self._services.close()


def smallest_clip() -> Path:
    testdata = REPO_ROOT.parent / "shared" / "testdata"
    clips = sorted((testdata / "videos").rglob("*.mp4"), key=lambda p: p.stat().st_size)
    if not clips:
        raise SystemExit(f"no test clips under {testdata / 'videos'}")
    return clips[0]


def effective_gunicorn_config(command: list[str]) -> dict[str, Any]:
    """What gunicorn will actually run with (the config file plus the command line's overrides)."""
    from gunicorn.app.wsgiapp import WSGIApplication

    saved = sys.argv
    sys.argv = ["gunicorn", *command[1:]]
    try:
        cfg = WSGIApplication().cfg
    finally:
        sys.argv = saved
    return {
        "worker_class": cfg.worker_class_str,
        "workers": cfg.workers,
        "threads": cfg.threads,
        "keepalive": cfg.keepalive,
        "timeout": cfg.timeout,
    }


# --- the run --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.bench_api", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--config",
        type=Path,
        default=GUNICORN_CONF,
        help="gunicorn config file (default: the shipped api/gunicorn_conf.py)",
    )
    p.add_argument("--no-config", dest="config", action="store_const", const=None, help="gunicorn's own defaults")
    p.add_argument("--workers", type=int, help="override the config's gunicorn workers")
    p.add_argument("--threads", type=int, help="override the config's threads per worker")
    p.add_argument("--worker-class", help="override the config's worker class (sync, gthread)")
    p.add_argument("--concurrency", type=int, default=16, help="client connections in flight (default 16)")
    p.add_argument("--upload-concurrency", type=int, default=4, help="connections for the uploads (default 4)")
    p.add_argument("--duration", type=float, default=15.0, help="seconds per phase (default 15)")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds of status polls before measuring (default 3)")
    p.add_argument("--polls", type=int, default=1_000_000, help="Python driver: requests per GET phase at most")
    p.add_argument("--uploads", type=int, default=1_000_000, help="Python driver: uploads at most")
    p.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto", help="default: wrk if on PATH")
    p.add_argument("--wrk-threads", type=int, default=1, help="wrk threads (default 1: the host is small)")
    p.add_argument("--phases", default="healthz,status,upload,list", help="which phases, comma-separated")
    p.add_argument("--rate-limit", type=int, default=UNREACHABLE_RATE_LIMIT, help="VERITY_RATE_LIMIT_PER_MIN")
    p.add_argument("--pg", default=DEFAULT_PG_ADMIN, help="Postgres admin URL for the scratch database")
    p.add_argument("--redis", default=os.environ.get("VERITY_BENCH_REDIS", "redis://127.0.0.1:6379/15"))
    p.add_argument("--json", type=Path, help="write the results here")
    return p.parse_args(argv)


PHASES = {
    "healthz": "GET /healthz",
    "status": "GET /v1/jobs/<id>",
    "upload": "POST /v1/jobs",
    "list": f"GET /v1/jobs?limit={LIST_LIMIT}",
}


def _generator(choice: str) -> str | None:
    """The wrk binary to use, or None for the Python driver."""
    found = shutil.which("wrk")
    if choice == "wrk" and not found:
        raise SystemExit("--generator wrk: no wrk on PATH (apt-get install wrk)")
    return found if choice in ("auto", "wrk") else None


@contextlib.contextmanager
def _measured(meter: CpuMeter, results: dict[str, Any], name: str) -> Iterator[dict[str, Any]]:
    row: dict[str, Any] = {"load_avg_1m": round(os.getloadavg()[0], 2)}
    meter.begin()
    yield row
    row.update(meter.end())
    requests = row.get("requests") or 0
    if requests:
        server_s = row["gunicorn_cpu_s"] + row["postgres_cpu_s"] + row["redis_cpu_s"]
        row["server_cpu_ms_per_request"] = round(1000 * server_s / requests, 3)
        row["generator_cpu_ms_per_request"] = round(1000 * row["generator_cpu_s"] / requests, 3)
    results[name] = row


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> dict[str, Any]:
    args = parse_args(argv)
    command = shlex.join(["python", "-m", "tools.bench_api", *(argv if argv is not None else sys.argv[1:])])
    print(command, file=out, flush=True)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    if unknown := set(phases) - set(PHASES):
        raise SystemExit(f"unknown phases {sorted(unknown)}; known: {', '.join(PHASES)}")
    wrk_bin = _generator(args.generator)
    clip = smallest_clip()
    body, content_type = multipart(clip.name, clip.read_bytes())
    stack = Stack(args)
    results: dict[str, Any] = {}
    import redis

    try:
        gunicorn = {"command": shlex.join(stack.command), **effective_gunicorn_config(stack.command)}
        print(f"server: {gunicorn['command']}", file=out, flush=True)
        base = f"http://127.0.0.1:{stack.port}"
        auth = f"Bearer {stack.key}"
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        if (status := _upload(stack.key, body, content_type)(conn)) != 202:
            raise SystemExit(f"the first upload answered {status}, not 202; gunicorn log:\n{stack.log_tail()}")
        conn.close()
        conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=30)
        conn.request("GET", "/v1/jobs?limit=1", headers={"Authorization": auth})
        job_id = json.loads(conn.getresponse().read())["jobs"][0]["id"]
        conn.close()
        paths = {"healthz": "/healthz", "status": f"/v1/jobs/{job_id}", "list": f"/v1/jobs?limit={LIST_LIMIT}"}
        meter = CpuMeter(stack.gunicorn.pid, stack.database, redis.Redis.from_url(args.redis))
        folder = Path(tempfile.mkdtemp(prefix="wrk-", dir=stack.home))
        wrk = Wrk(wrk_bin, args.wrk_threads, folder) if wrk_bin else None

        def run_phase(phase: str, duration_s: float) -> dict[str, Any]:
            if phase == "upload":
                if wrk:
                    return wrk.run(base + "/v1/jobs", duration_s, args.upload_concurrency, auth, body, content_type)
                request = _upload(stack.key, body, content_type)
                return drive(request, stack.port, args.uploads, duration_s, args.upload_concurrency)
            headers = {} if phase == "healthz" else {"Authorization": auth}
            if wrk:
                return wrk.run(base + paths[phase], duration_s, args.concurrency, headers.get("Authorization", ""))
            return drive(_get(paths[phase], headers), stack.port, args.polls, duration_s, args.concurrency)

        warm = run_phase("status", args.warmup) if args.warmup > 0 else {"requests": 0}
        for phase in phases:
            name = PHASES[phase] + (f" ({clip.stat().st_size // 1024} KiB)" if phase == "upload" else "")
            with _measured(meter, results, name) as row:
                row.update(run_phase(phase, args.duration))
    finally:
        stack.close()

    generator = f"wrk ({wrk_bin}, {args.wrk_threads} thread(s))" if wrk_bin else "python threads (http.client)"
    cpus = len(os.sched_getaffinity(0))
    print(
        f"load generator: {generator}; {args.concurrency} connections for GETs, {args.upload_concurrency} for "
        f"uploads; {cpus} CPUs shared by the generator, the server, Postgres, Redis and moto",
        file=out,
    )
    print(
        f"gunicorn: {gunicorn['worker_class']}, {gunicorn['workers']} workers x {gunicorn['threads']} threads, "
        f"keepalive {gunicorn['keepalive']} s; warm-up {warm['requests']} polls",
        file=out,
    )
    if wrk:
        for line in wrk.commands:
            print(f"  {line}", file=out)
    print(
        "cpu ms/req: CPU of gunicorn + its Postgres backends + Redis per request; host busy: all CPUs over the "
        "phase; other: the part of that no process of this run used (another job on the host)",
        file=out,
    )
    header = (
        f"{'phase':<28}{'requests':>9}{'req/s':>8}{'p50 ms':>8}{'p90 ms':>8}{'p99 ms':>8}"
        f"{'cpu ms/req':>11}{'host busy':>10}{'other':>7}  statuses / errors"
    )
    print(header, file=out)
    for name, s in results.items():
        print(
            f"{name:<28}{s['requests']:>9}{s['requests_per_s'] or 0:>8.0f}{s['p50_ms'] or 0:>8.1f}"
            f"{s['p90_ms'] or 0:>8.1f}{s['p99_ms'] or 0:>8.1f}{s.get('server_cpu_ms_per_request') or 0:>11.2f}"
            f"{s.get('host_busy_pct', 0):>9.0f}%{s.get('other_busy_pct', 0):>6.0f}%"
            f"  {s['statuses']} {s['errors'] or ''}",
            file=out,
        )
    for name, s in results.items():
        per_worker = s.get("gunicorn_worker_cpu_s") or []
        if len(per_worker) > 1 and per_worker[-1] < 0.1 * per_worker[0]:
            print(
                f"note: {name}: lopsided gunicorn workers (CPU s {per_worker}): the kept-alive connections were "
                "accepted by fewer workers than there are, which caps the phase near one CPU per busy worker",
                file=out,
            )
    document = {
        "command": command,
        "generator": "wrk" if wrk_bin else "python",
        "generator_commands": wrk.commands if wrk else [],
        "gunicorn": gunicorn,
        "cpus": cpus,
        "args": {k: v for k, v in vars(args).items() if k != "json"},
        "phases": results,
    }
    if args.json:
        args.json.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    return document


if __name__ == "__main__":
    main()
