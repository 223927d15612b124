"""The API-key cache in the running app: a revoked key keeps working at most VERITY_API_KEY_CACHE_S in an
app (process) that already checked it, and at once in one that did not; a status poll or a list page is one
SQL statement once the key is cached (no per-row queries).

A fake clock replaces the cache's, so nothing here sleeps."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event

from tests.conftest import Services, bearer
from tests.support.http import body


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make_app(ttl_s: float, clock: Clock) -> Flask:
    from api.app import create_app
    from core.settings import get_settings
    from db.apikeys import KeyCache

    app = create_app(dataclasses.replace(get_settings(), api_key_cache_s=ttl_s))
    cache: KeyCache = app.extensions["verity_key_cache"]
    assert cache.ttl_s == ttl_s  # the setting reaches the cache
    cache.clock = clock
    return app


def new_key(tenant: str = "cache") -> tuple[str, str]:
    from db.apikeys import create_key
    from db.session import session_scope

    with session_scope() as s:
        issued = create_key(s, "cached", tenant, "submitter")
        return issued.plaintext, issued.record.prefix


def revoke(prefix: str) -> None:
    from db.apikeys import revoke_key
    from db.session import session_scope

    with session_scope() as s:
        assert revoke_key(s, prefix)


def test_a_revoked_key_stops_working_within_the_ttl(services: Services) -> None:
    clock = Clock()
    app, other_process = make_app(5.0, clock), make_app(5.0, clock)
    key, prefix = new_key()
    client, other = app.test_client(), other_process.test_client()
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200  # looked up, then remembered
    revoke(prefix)

    clock.now += 4.9
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200  # the bound the TTL documents
    # Another process (app) has its own cache: it never saw the key, so it looks it up and refuses it.
    assert other.get("/v1/jobs", headers=bearer(key)).status_code == 401
    clock.now += 0.1
    response = client.get("/v1/jobs", headers=bearer(key))
    assert response.status_code == 401 and body(response)["error"]["code"] == "UNAUTHENTICATED"
    clock.now -= 5.0  # the refusal is not cached either: nothing brings the key back
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 401


def test_ttl_zero_checks_every_request(services: Services) -> None:
    client = make_app(0.0, Clock()).test_client()
    key, prefix = new_key()
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 200
    revoke(prefix)
    assert client.get("/v1/jobs", headers=bearer(key)).status_code == 401


@contextmanager
def counted_statements() -> Iterator[list[str]]:
    from db.session import get_engine

    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, _params: Any, _context: Any, _many: bool) -> None:
        seen.append(statement)

    event.listen(get_engine(), "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(get_engine(), "before_cursor_execute", count)


@pytest.mark.parametrize("path", ["/v1/jobs/{job}", "/v1/jobs?limit=25", "/v1/jobs?limit=5&status=QUEUED"])
def test_a_poll_or_a_page_is_one_statement(services: Services, path: str) -> None:
    from db.models import Job
    from db.session import session_scope

    tenant = f"count-{uuid.uuid4().hex[:8]}"
    key, _ = new_key(tenant)
    with session_scope() as s:
        jobs = [
            Job(
                tenant=tenant,
                status="QUEUED",
                stage="queued",
                input_key=f"uploads/{i}",
                sha256="0" * 64,
                size_bytes=1,
                filename="a.mp4",
                content_type="video/mp4",
                params={"max_frames": 8, "sampling": "uniform"},
                metadata_={"n": i},
            )
            for i in range(30)
        ]
        s.add_all(jobs)
    url = path.format(job=jobs[0].id)
    client = make_app(5.0, Clock()).test_client()
    with counted_statements() as first:
        assert client.get(url, headers=bearer(key)).status_code == 200
    with counted_statements() as cached:
        response = client.get(url, headers=bearer(key))
    assert response.status_code == 200
    assert len(first) == 2, first  # the key lookup, then the job or the page
    assert len(cached) == 1, cached  # however many jobs are on the page
