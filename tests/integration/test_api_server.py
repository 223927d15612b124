"""The API under gunicorn with the shipped configuration (api/gunicorn_conf.py: gthread, keep-alive) and two
workers against real Redis: the per-key rate limit is shared by both workers (request N+1 is 429 with
Retry-After), a chunked body over the cap is refused with 413 while it is still being sent, connections are
kept alive, more kept-alive clients than the workers hold are all served, a revoked key stops working in
every worker once the key cache's TTL has passed, and the errors gunicorn answers itself (414, 431, a malformed
request) have the API's JSON error shape, like a malformed chunked body, a 405 (with Allow) and a file over the
upload cap (413, nothing stored)."""

from __future__ import annotations

import http.client
import json
import os
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, Keys, Services, bearer
from tests.support.services import free_port, wait_port

LIMIT = 10
KEY_CACHE_S = 0.5


@dataclass(frozen=True)
class Server:
    base: str
    port: int


@pytest.fixture(scope="module")
def server(services: Services, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    port = free_port()
    env = {
        **os.environ,
        **services.env,
        "VERITY_RATE_LIMIT_PER_MIN": str(LIMIT),
        "VERITY_MAX_UPLOAD_BYTES": "1024",
        "VERITY_API_KEY_CACHE_S": str(KEY_CACHE_S),
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", str(REPO / "api" / "gunicorn_conf.py"),
         "-w", "2", "-b", f"127.0.0.1:{port}", "api.app:create_app()"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_port(port)
        yield Server(f"http://127.0.0.1:{port}", port)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def fresh_key(name: str) -> str:
    from db.apikeys import create_key
    from db.session import session_scope

    with session_scope() as s:
        return create_key(s, name, "ratelimit", "submitter").plaintext


def test_rate_limit_is_shared_by_both_workers(server: Server) -> None:
    key = fresh_key("rate-limited")
    # Concurrent requests, so both sync workers answer some: a per-process count would let up to 2 x LIMIT pass.
    with ThreadPoolExecutor(max_workers=8) as pool:
        url = f"{server.base}/v1/jobs?limit=1"
        responses = list(pool.map(lambda _: requests.get(url, headers=bearer(key), timeout=30), range(24)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) == LIMIT and statuses.count(429) == 24 - LIMIT, statuses
    limited = next(r for r in responses if r.status_code == 429)
    assert limited.json()["error"]["code"] == "RATE_LIMITED"
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    # Another key has its own budget, and the exempt routes are never limited.
    assert requests.get(f"{server.base}/v1/jobs", headers=bearer(fresh_key("other")), timeout=10).status_code == 200
    assert all(requests.get(f"{server.base}/healthz", timeout=10).status_code == 200 for _ in range(LIMIT + 2))


def test_chunked_body_over_the_cap_is_413_before_it_is_all_sent(server: Server) -> None:
    key = fresh_key("chunked")
    boundary = "verityboundary"
    head = (
        f"POST /v1/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    part = f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n\r\n'.encode()
    chunk = b"\x00" * 65536
    total = 1 << 30  # would be 1 GiB; the cap is 1 KiB plus 1 MiB of multipart room
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        answer = b""
        while sent < total:
            try:
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += len(chunk)
            if select.select([sock], [], [], 0)[0]:
                break
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 64 << 20, f"the server read {sent >> 20} MiB before refusing"


def test_connections_are_kept_alive(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.connect()
        sock = conn.sock
        for _ in range(3):
            conn.request("GET", "/healthz")
            response = conn.getresponse()
            assert response.status == 200 and response.read()
            assert (response.getheader("Connection") or "").lower() != "close"
        assert conn.sock is sock  # three requests over one TCP connection (the sync worker closes each time)
    finally:
        conn.close()


def test_more_kept_alive_clients_than_the_workers_hold_are_all_served(server: Server) -> None:
    # Each worker holds at most 2 x threads connections (api/gunicorn_conf.py): 40 clients that each keep their
    # connection open are more than both workers hold, so some responses close their connection and the client
    # reconnects (http.client does it by itself). None may starve or fail.
    def client(_: int) -> list[int]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            statuses = []
            for _ in range(5):
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                statuses.append(response.status)
            return statuses
        finally:
            conn.close()

    with ThreadPoolExecutor(max_workers=40) as pool:
        statuses = [s for result in pool.map(client, range(40)) for s in result]
    assert statuses == [200] * 200


def test_a_revoked_key_stops_working_in_every_worker(server: Server) -> None:
    from db.apikeys import revoke_key
    from db.session import session_scope

    key = fresh_key("revoked-later")
    url = f"{server.base}/v1/jobs?limit=1"
    # Separate connections, concurrently: both workers authenticate (and remember) the key.
    with ThreadPoolExecutor(max_workers=8) as pool:
        before = list(pool.map(lambda _: requests.get(url, headers=bearer(key), timeout=30).status_code, range(8)))
    assert before == [200] * 8
    with session_scope() as s:
        revoke_key(s, key.split("_")[1])
    time.sleep(KEY_CACHE_S + 0.2)
    with ThreadPoolExecutor(max_workers=8) as pool:
        after = list(pool.map(lambda _: requests.get(url, headers=bearer(key), timeout=30).status_code, range(8)))
    assert after == [401] * 8


def exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """One raw HTTP/1.1 exchange: (status, headers, body) of the response."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while b"\r\n\r\n" not in answer and (data := sock.recv(65536)):
            answer += data
        head, _, body = answer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        while len(body) < int(headers.get("content-length", 0)) and (data := sock.recv(65536)):
            body += data
    return int(lines[0].split()[1]), headers, body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /v1/jobs?cursor=" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(120)) + b"\r\n", 431),
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
        (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Nul: a\x00b\r\n\r\n", 400),
        (b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    ],
    ids=["request-line-too-long", "header-too-large", "too-many-headers", "malformed-request-line",
         "bad-http-version", "nul-in-header", "unsupported-transfer-coding"],
)  # fmt: skip
def test_errors_gunicorn_answers_itself_have_the_json_shape(server: Server, request_bytes: bytes, status: int) -> None:
    got, headers, body = exchange(server.port, request_bytes)
    assert got == status, body[:300]
    assert headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(json.loads(body)) == {"error"} and error["code"] and error["message"], body


def test_a_malformed_chunked_body_is_a_json_4xx(server: Server, keys: Keys) -> None:
    head = (
        f"POST /v1/calibrations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {keys.admin}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    status, headers, body = exchange(server.port, head + b"zz\r\n{}\r\n0\r\n\r\n")
    assert status == 400 and headers["content-type"] == "application/json", (status, body[:300])
    assert json.loads(body)["error"]["code"] == "MALFORMED_BODY"


def test_405_carries_allow_through_gunicorn(server: Server) -> None:
    response = requests.put(f"{server.base}/v1/jobs", timeout=10)
    assert response.status_code == 405 and response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    assert "POST" in response.headers["Allow"]


def test_a_file_over_the_cap_is_413_and_leaves_nothing_in_the_bucket(server: Server) -> None:
    from core.storage import get_store

    def stored() -> set[str]:
        listed = get_store().client.list_objects_v2(Bucket="verity-test")  # type: ignore[attr-defined]
        return {o["Key"] for o in listed.get("Contents", [])}

    before = stored()
    response = requests.post(
        f"{server.base}/v1/jobs",
        headers=bearer(fresh_key("over-cap")),
        files={"file": ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 2048, "video/mp4")},
        timeout=30,
    )
    assert response.status_code == 413 and response.json()["error"]["code"] == "REQUEST_ENTITY_TOO_LARGE"
    assert "1024" in response.json()["error"]["message"]
    assert stored() == before
