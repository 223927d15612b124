"""A loopback HTTP server for submit-by-URL tests: serves bytes, redirects, errors, or a body that never ends."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Routes:
    """path -> body (bytes), redirect target (str starting with "->"), or "forever" (an endless chunked body)."""

    table: dict[str, bytes | str] = field(default_factory=dict)


def _handler(routes: Routes) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # http.server's name
            route = routes.table.get(self.path)
            if route is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif isinstance(route, bytes):
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(route)))
                self.end_headers()
                self.wfile.write(route)
            elif route.startswith("->"):
                self.send_response(302)
                self.send_header("Location", route[2:])
                self.send_header("Content-Length", "0")
                self.end_headers()
            else:  # forever: small chunks, steadily, until the client hangs up
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    while True:
                        self.wfile.write(b"400\r\n" + b"\0" * 0x400 + b"\r\n")
                        self.wfile.flush()
                        time.sleep(0.01)
                except OSError:
                    return

    return Handler


@contextmanager
def media_server(routes: Routes) -> Iterator[str]:
    """The server's base URL (http://127.0.0.1:<port>) while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(routes))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
