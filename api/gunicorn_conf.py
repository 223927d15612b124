"""gunicorn settings for the API: ``gunicorn -c api/gunicorn_conf.py 'api.app:create_app()'``.

Options given on the command line override these (``-b``, ``-w``, ``--threads``, ...), and so do gunicorn's own
environment variables (``WEB_CONCURRENCY`` for the worker count, ``GUNICORN_CMD_ARGS``).

Why these values (measured with ``python -m tools.bench_api``):

* ``gthread`` workers keep HTTP connections alive between requests. The default ``sync`` worker closes the
  connection after every response, so a client polling a job's status pays a TCP handshake each time and
  the worker's accept/close work per request. An idle kept-alive connection waits in the worker's poller, not
  on a thread.
* Each worker builds its clients (object store, Celery, database and Redis connections) before it takes
  requests (``post_worker_init``), so no client's first request pays for imports and client creation.
* One process per CPU: the work per request is mostly Python (Flask, SQLAlchemy, JSON), so more processes
  than CPUs only add context switches and memory. A few threads per process overlap the database, Redis and
  object-store round trips of concurrent requests without many more processes.

* At most ``2 * threads`` connections per worker (``worker_connections``), so at most ``threads`` of them idle
  in keep-alive. A kept-alive connection stays with the worker that accepted it. When a client opens a fixed
  set of connections at once (a load generator, a proxy's upstream pool), one worker used to accept all of
  them and the others sat idle: the list phase of ``tools.bench_api`` ran at 291 req/s, p99 117 ms, on one
  CPU. A full worker stops accepting, and a worker already holding ``threads`` idle connections closes the
  next one after its response. The client then reconnects to a worker with room, and the same phase ran at
  1,065 req/s, p99 29 ms. The price is a reconnect now and then for clients that hold many idle connections.

* Live streams' WebSockets (api/stream_socket.py) work on these threads: gthread hands the request's socket to
  the app in blocking mode (``gunicorn.socket``), simple-websocket speaks the protocol on it from the request's
  thread, and the view's response tells gunicorn to close the connection instead of writing an HTTP response. So
  an open WebSocket or Server-Sent Events stream holds one thread (and one of ``worker_connections``) for its
  life: size ``VERITY_API_THREADS`` to the concurrent streams a process should serve besides its requests. An
  async worker (gevent, eventlet) would serve more per process but needs a monkey-patched stack.

* gunicorn refuses some requests before the app sees them: a request line over ``limit_request_line`` (414),
  more than ``limit_request_fields`` headers or one over ``limit_request_field_size`` (431), a malformed request
  line, header or chunk (400). Its own error page is HTML; ``post_worker_init`` makes it write the API's JSON
  error shape instead, so every error a client gets has one shape.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from gunicorn import util

bind = os.environ.get("VERITY_API_BIND", "0.0.0.0:8000")
_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
workers = int(os.environ.get("WEB_CONCURRENCY") or _cpus)
worker_class = "gthread"
threads = int(os.environ.get("VERITY_API_THREADS") or 4)
worker_connections = 2 * threads
# Seconds an idle client connection stays open between requests.
keepalive = 5
timeout = 120
# gunicorn's defaults, stated: the longest URL the API issues (a cursor, repeated aggregator= parameters) is far
# shorter, and an API key, an Idempotency-Key or a request id far shorter than a header field may be.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190


def json_error(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn.util.write_error's signature: the response to a request gunicorn refused itself."""
    body = json.dumps({"error": {"code": reason.upper().replace(" ", "_"), "message": (mesg or reason)[:500]}})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, (head + body).encode("latin-1"))


def post_worker_init(worker: Any) -> None:
    from api.app import warm_up

    # The worker's error path calls util.write_error by module attribute (gunicorn/workers/base.py handle_error);
    # tests/integration/test_api_server.py fails if a gunicorn release stops doing so.
    util.write_error = json_error
    warm_up(worker.wsgi)
