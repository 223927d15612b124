"""The Python client against the real API over HTTP (werkzeug server in a thread, real Postgres/Redis/S3):
typed errors, streamed uploads, pagination, waiting with progress, and retries against a flaky server."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from client.api import (
    AuthError,
    ConflictError,
    InvalidRequestError,
    MultipartFile,
    NetworkError,
    NotFoundError,
    RateLimitedError,
    ServerError,
    VerityClient,
    VerityError,
    WaitTimeout,
)
from tests.conftest import REPO, Services, shared_file
from tests.support.live_api import Tenant, make_job
from tests.support.services import free_port
from tests.support.videos import MP4_HEAD


def update_job(job_id: str, **values: Any) -> None:
    from sqlalchemy import update

    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        s.execute(update(Job).where(Job.id == uuid.UUID(job_id)).values(**values))


def test_client_imports_no_server_code() -> None:
    """The client is installable on its own: importing it (CLI included) pulls in none of the server stack."""
    probe = (
        "import sys, client.api, client.cli; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'flask', 'sqlalchemy', 'torch', 'celery', 'api', 'db', 'workers', 'models'}); "
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_multipart_body_streams_in_bounded_chunks(tmp_path: Path) -> None:
    from werkzeug.formparser import parse_form_data
    from werkzeug.test import EnvironBuilder

    video = tmp_path / 'we"ird\nname.mp4'
    video.write_bytes(MP4_HEAD + bytes(range(256)) * 1000)
    with MultipartFile(video, {"webhook_url": "https://example.com/h", "metadata": '{"a": 1}'}) as body:
        chunks = []
        while chunk := body.read(8192):
            chunks.append(chunk)
        raw = b"".join(chunks)
        assert len(raw) == len(body)
        assert max(len(c) for c in chunks) <= 8192
    environ = EnvironBuilder(method="POST", data=raw, content_type=body.content_type).get_environ()
    _, form, files = parse_form_data(environ)
    assert form["webhook_url"] == "https://example.com/h" and form["metadata"] == '{"a": 1}'
    assert files["file"].read() == video.read_bytes()
    assert "\n" not in (files["file"].filename or "") and '"' not in (files["file"].filename or "")


def test_submit_streams_the_file_and_round_trips(
    live_api: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    video = shared_file("videos/real/retalking_1.mp4")
    reads: list[int] = []
    original = MultipartFile.read

    def spy(self: MultipartFile, size: int = -1) -> bytes:
        reads.append(size)
        return original(self, size)

    monkeypatch.setattr(MultipartFile, "read", spy)
    client = VerityClient(live_api, tenant.submitter)
    # Two frames: a worker from the e2e stack, if one is up, finishes it quickly.
    job = client.submit(video, max_frames=2, metadata={"source": "client"}, idempotency_key=f"k-{uuid.uuid4()}")
    assert len(reads) > 10 and all(0 < size <= 1 << 20 for size in reads), "read in chunks, never whole"
    assert job["status"] in ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED")
    assert job["size_bytes"] == video.stat().st_size
    assert job["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    assert job["params"]["max_frames"] == 2 and job["metadata"] == {"source": "client"}
    assert job["filename"] == video.name
    # The same request again (a different one would be 422 IDEMPOTENCY_KEY_REUSED).
    replay = client.submit(video, max_frames=2, metadata={"source": "client"}, idempotency_key=job["idempotency_key"])
    assert replay["id"] == job["id"]
    assert client.job(job["id"])["id"] == job["id"]


def test_errors_are_typed_and_carry_the_server_error(live_api: str, tenant: Tenant, tmp_path: Path) -> None:
    client = VerityClient(live_api, tenant.submitter)
    with pytest.raises(AuthError) as bad_key:
        VerityClient(live_api, "vrt_000000000000_nope").job(str(uuid.uuid4()))
    assert (bad_key.value.status, bad_key.value.code) == (401, "UNAUTHENTICATED")
    with pytest.raises(NotFoundError) as missing:
        client.job(str(uuid.uuid4()))
    assert missing.value.code == "NOT_FOUND" and "no such job" in missing.value.message
    running = make_job(tenant.name, "RUNNING")
    with pytest.raises(ConflictError) as not_ready:
        client.result(running)
    assert not_ready.value.code == "RESULT_NOT_READY"
    with pytest.raises(AuthError) as forbidden:
        client.feedback(running, "FAKE")
    assert (forbidden.value.status, forbidden.value.code) == (403, "FORBIDDEN")
    with pytest.raises(ConflictError):
        VerityClient(live_api, tenant.moderator).feedback(running, "FAKE", category="FALSE_NEGATIVE", note="n")

    clip = tmp_path / "clip.mp4"
    clip.write_bytes(MP4_HEAD)
    with pytest.raises(InvalidRequestError) as bad_frames:
        client.submit(clip, max_frames=0)
    assert (bad_frames.value.status, bad_frames.value.code) == (400, "INVALID_PARAMETER")
    with pytest.raises(InvalidRequestError) as bad_hook:
        client.submit(clip, webhook_url="ftp://example.com/x")
    assert (bad_hook.value.status, bad_hook.value.code) == (422, "INVALID_WEBHOOK_URL")
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InvalidRequestError) as empty_file:
        client.submit(empty)
    assert empty_file.value.code == "EMPTY_FILE"


def test_jobs_iterates_every_page_and_filters(live_api: str, services: Services) -> None:
    from db.apikeys import create_key
    from db.session import session_scope

    name = f"pages-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        key = create_key(s, "pages", name, "submitter").plaintext
    made = [make_job(name, "RUNNING") for _ in range(5)] + [make_job(name, "FAILED")]
    client = VerityClient(live_api, key)
    listed = [j["id"] for j in client.jobs(limit=2)]
    assert sorted(listed) == sorted(made) and len(listed) == len(set(listed))
    assert [j["id"] for j in client.jobs(status="FAILED")] == [made[-1]]


def test_cancel_and_wait_on_a_cancelled_job(live_api: str, tenant: Tenant) -> None:
    client = VerityClient(live_api, tenant.submitter)
    job_id = make_job(tenant.name, "QUEUED")
    assert client.cancel(job_id)["status"] == "CANCELLED"
    seen: list[str] = []
    done = client.wait(job_id, poll_s=0.05, timeout_s=5, on_progress=lambda j: seen.append(j["status"]))
    assert done["status"] == "CANCELLED" and seen == ["CANCELLED"]


def test_wait_reports_each_stage_change_then_returns(live_api: str, tenant: Tenant) -> None:
    client = VerityClient(live_api, tenant.submitter)
    job_id = make_job(tenant.name, "RUNNING", stage="downloading", progress=0.01)
    steps = [
        {"stage": "decoding", "progress": 0.1},
        {"stage": "scoring", "progress": 0.55},
        {"status": "SUCCEEDED", "stage": "done", "progress": 1.0},
    ]

    def worker() -> None:
        for values in steps:
            time.sleep(0.4)
            update_job(job_id, **values)

    seen: list[tuple[str, str | None, float]] = []
    thread = threading.Thread(target=worker)
    thread.start()
    done = client.wait(
        job_id, poll_s=0.05, timeout_s=30, on_progress=lambda j: seen.append((j["status"], j["stage"], j["progress"]))
    )
    thread.join()
    assert done["status"] == "SUCCEEDED"
    assert seen == [
        ("RUNNING", "downloading", 0.01),
        ("RUNNING", "decoding", 0.1),
        ("RUNNING", "scoring", 0.55),
        ("SUCCEEDED", "done", 1.0),
    ]


def test_wait_times_out_with_the_last_state(live_api: str, tenant: Tenant) -> None:
    job_id = make_job(tenant.name, "RUNNING", stage="scoring", progress=0.5)
    started = time.monotonic()
    with pytest.raises(WaitTimeout) as timeout:
        VerityClient(live_api, tenant.submitter).wait(job_id, poll_s=0.1, timeout_s=0.5)
    assert 0.4 < time.monotonic() - started < 5
    assert timeout.value.job["stage"] == "scoring"


class Flaky:
    """A stub server answering 503 (or a body that is not JSON) a set number of times, then a job."""

    def __init__(self, failures: int, status: int = 503, body: bytes = b'{"error": {"code": "X", "message": "m"}}'):
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                outer.requests.append(self.command)
                if len(outer.requests) <= failures:
                    self.send_response(status)
                    self.send_header("Retry-After", "0")
                    payload = body
                else:
                    self.send_response(200)
                    payload = json.dumps({"id": "j", "status": "QUEUED"}).encode()
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.mark.parametrize(("status", "error"), [(503, ServerError), (429, RateLimitedError)])
def test_gets_are_retried_but_a_delete_is_not(status: int, error: type[VerityError]) -> None:
    flaky = Flaky(failures=2, status=status)
    try:
        client = VerityClient(flaky.url, "k", backoff_s=0.01)
        assert client.job("j")["status"] == "QUEUED"
        assert flaky.requests == ["GET", "GET", "GET"]
        flaky.requests.clear()
        with pytest.raises(error) as refused:
            client.cancel("j")
        assert flaky.requests == ["DELETE"] and refused.value.code == "X" and refused.value.status == status
    finally:
        flaky.close()


def test_retries_give_up_and_non_json_errors_still_have_a_code() -> None:
    flaky = Flaky(failures=10, status=502, body=b"<html>bad gateway</html>")
    try:
        with pytest.raises(ServerError) as exhausted:
            VerityClient(flaky.url, "k", retries=2, backoff_s=0.01).job("j")
        assert len(flaky.requests) == 3
        assert exhausted.value.code == "HTTP_502" and "bad gateway" in exhausted.value.message
    finally:
        flaky.close()
    with pytest.raises(NetworkError) as refused:
        VerityClient(f"http://127.0.0.1:{free_port()}", "k", retries=1, backoff_s=0.01).job("j")
    assert refused.value.status is None
