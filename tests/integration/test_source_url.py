"""Submit by URL: the API checks only the URL's form; the worker fetches it through the SSRF guard, within the size
cap and the deadline, admits it as an upload, and fails the job with a SOURCE_* code when it cannot."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.conftest import Keys, Services, bearer, insert_job, reset_caches, shared_file
from tests.support.http import body
from tests.support.media_server import Routes, media_server
from tests.support.videos import CLIP

MULTIPART = "multipart/form-data"  # the job route's one body type, whichever source it names


@pytest.fixture(scope="module")
def clip() -> bytes:
    return shared_file(CLIP).read_bytes()


@pytest.fixture(scope="module")
def server(clip: bytes) -> Iterator[tuple[str, Routes]]:
    routes = Routes({"/clip.mp4": clip, "/forever": "forever", "/text": b"<html>not a video</html>" * 10})
    with media_server(routes) as url:
        routes.table["/hop"] = f"->{url}/clip.mp4"
        routes.table["/to-metadata"] = "->http://169.254.169.254/latest/meta-data/"
        routes.table["/to-loopback"] = f"->{url}/clip.mp4"
        yield url, routes


def _settings(**changes: Any) -> Any:
    from core.settings import get_settings

    return replace(get_settings(), **{"source_allow_private": True, "source_timeout_s": 5.0, **changes})


def test_a_loopback_source_is_fetched_and_admitted_like_an_upload(
    services: Services, server: tuple[str, Routes], clip: bytes, tmp_path: Any
) -> None:
    from workers.fetch import fetch_source

    admitted = fetch_source(f"{server[0]}/hop", tmp_path / "in", _settings())  # one redirect, vetted again
    assert admitted.sha256 == hashlib.sha256(clip).hexdigest() and admitted.size == len(clip)
    assert admitted.content_type == "video/mp4"


@pytest.mark.parametrize(
    ("path", "changes", "code"),
    [
        ("/forever", {"source_timeout_s": 1.5}, "SOURCE_TIMEOUT"),
        ("/forever", {"max_upload_bytes": 256 * 1024}, "SOURCE_TOO_LARGE"),
        ("/clip.mp4", {"max_upload_bytes": 1000}, "SOURCE_TOO_LARGE"),  # refused on its Content-Length
        ("/missing", {}, "SOURCE_UNREACHABLE"),
    ],
)
def test_sources_that_cannot_be_fetched_fail_with_their_code(
    services: Services, server: tuple[str, Routes], tmp_path: Any, path: str, changes: dict[str, Any], code: str
) -> None:
    from workers.fetch import SourceFailure, fetch_source

    with pytest.raises(SourceFailure) as refused:
        fetch_source(server[0] + path, tmp_path / "in", _settings(**changes))
    assert refused.value.code == code


def test_a_closed_port_is_unreachable_and_not_a_video_is_unsupported(services: Services, tmp_path: Any) -> None:
    from core.media.errors import MediaError
    from workers.fetch import SourceFailure, fetch_source

    with pytest.raises(SourceFailure) as refused:
        fetch_source("http://127.0.0.1:9/clip.mp4", tmp_path / "in", _settings())
    assert refused.value.code == "SOURCE_UNREACHABLE"
    with media_server(Routes({"/text": b"<html>" * 20})) as url, pytest.raises(MediaError) as bad:
        fetch_source(f"{url}/text", tmp_path / "in2", _settings())
    assert bad.value.code == "UNSUPPORTED_MEDIA_TYPE"


def test_a_redirect_to_a_private_address_is_refused_with_the_guard_on(
    services: Services, server: tuple[str, Routes], tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard is on; only the test server's own first hop is let through, so the redirect is judged alone."""
    from core import netguard
    from workers import fetch

    first_hop = server[0]
    trusted = {first_hop + "/to-metadata", first_hop + "/to-loopback"}

    def vet(url: str, allow_private: bool = False, what: str = "webhook URL") -> netguard.VettedTarget:
        return netguard.vet_url(url, allow_private=url in trusted, what=what)

    monkeypatch.setattr(fetch, "vet_url", vet)
    guarded = _settings(source_allow_private=False)
    for path in ("/to-metadata", "/to-loopback"):
        with pytest.raises(fetch.SourceFailure) as refused:
            fetch.fetch_source(first_hop + path, tmp_path / "in", guarded)
        assert refused.value.code == "SOURCE_REFUSED", refused.value.message
    with pytest.raises(fetch.SourceFailure) as refused:  # and with no exception at all, the first hop too
        fetch.fetch_source(first_hop + "/clip.mp4", tmp_path / "in", _settings(source_allow_private=False))
    assert refused.value.code == "SOURCE_REFUSED"


def test_the_api_checks_the_form_only_and_stores_the_job(client: FlaskClient, keys: Keys) -> None:
    url = "https://media.example.invalid/clip.mp4"  # never resolved by the API
    response = client.post("/v1/jobs", data={"source_url": url}, headers=bearer(keys.submitter), content_type=MULTIPART)
    assert response.status_code == 202, response.json
    job = body(response)
    assert job["status"] == "QUEUED" and job["sha256"] is None and job["size_bytes"] is None
    for bad in ("ftp://example.com/a.mp4", "http://user:pw@example.com/a.mp4", "http://10.0.0.7/a.mp4"):
        refused = client.post(
            "/v1/jobs", data={"source_url": bad}, headers=bearer(keys.submitter), content_type=MULTIPART
        )
        assert refused.status_code == 422 and body(refused)["error"]["code"] == "INVALID_SOURCE_URL", bad
    both = client.post(
        "/v1/jobs",
        data={"source_url": url, "upload_id": str(uuid.uuid4())},
        headers=bearer(keys.submitter),
        content_type=MULTIPART,
    )
    assert both.status_code == 400 and body(both)["error"]["code"] == "MISSING_FILE"


def test_the_worker_fails_a_job_whose_source_streams_forever_and_stores_nothing(
    services: Services, server: tuple[str, Routes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.storage import ObjectMissing, get_store
    from db.models import Job
    from db.session import session_scope
    from workers.tasks import detect

    monkeypatch.setenv("VERITY_SOURCE_ALLOW_PRIVATE", "1")
    monkeypatch.setenv("VERITY_SOURCE_TIMEOUT_S", "1.5")
    reset_caches()
    try:
        # Written as the API would (its own guard refuses the loopback URL); the worker's is relaxed for it.
        job_id = str(insert_job("acme", "QUEUED", source_url=f"{server[0]}/forever", sha256=None, size_bytes=None))
        detect(job_id)
    finally:
        monkeypatch.undo()
        reset_caches()
    with session_scope() as session:
        job = session.get(Job, uuid.UUID(job_id))
        assert job is not None
        assert (job.status, job.error_code, job.attempt) == ("FAILED", "SOURCE_TIMEOUT", 1)
        key = job.input_key
    with pytest.raises(ObjectMissing):
        get_store().download_to(key, services.home / "should-not-exist")
