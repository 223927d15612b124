"""Webhook endpoints the tests point the API at: a scripted HTTP receiver that records every request, and a
bare TCP canary that only counts connections (for SSRF checks)."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


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
