"""The HTTP API against real Postgres, Redis and an S3 server: auth, tenancy, uploads, idempotency, errors."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from werkzeug.test import TestResponse

from tests.conftest import Keys, Services, bearer, shared_file
from tests.support.http import body
from tests.support.videos import MP4_HEAD, tiny_mp4


@pytest.fixture(scope="module")
def client(services: Services) -> Iterator[FlaskClient]:
    from api.app import create_app

    app = create_app()
    with app.test_client() as c:
        yield c


def submit(client: FlaskClient, key: str, payload: bytes, name: str = "clip.mp4", **extra: object) -> TestResponse:
    headers = bearer(key)
    if "idempotency_key" in extra:
        headers["Idempotency-Key"] = str(extra.pop("idempotency_key"))
    data = {"file": (io.BytesIO(payload), name), **extra}
    return client.post("/v1/jobs", data=data, headers=headers, content_type="multipart/form-data")


def test_health_and_readiness(client: FlaskClient) -> None:
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    checks = body(ready)["checks"]
    assert {k: v for k, v in checks.items() if k != "workers"} == {"database": "ok", "broker": "ok", "storage": "ok"}
    assert checks["workers"] in ("ok", "none seen in 60 s")  # informational; tests/integration/test_metrics.py


def test_no_key_is_401_and_revoked_key_is_401(client: FlaskClient, keys: Keys) -> None:
    response = client.get("/v1/jobs")
    assert response.status_code == 401
    assert body(response)["error"]["code"] == "UNAUTHENTICATED"
    assert client.get("/v1/jobs", headers=bearer(keys.revoked)).status_code == 401
    assert client.get("/v1/jobs", headers=bearer(keys.submitter + "x")).status_code == 401
    assert client.get("/v1/jobs", headers=bearer("not-a-key")).status_code == 401


def test_keys_are_stored_hashed(services: Services, keys: Keys) -> None:
    from db.models import ApiKey
    from db.session import session_scope

    with session_scope() as s:
        stored = [(k.prefix, k.secret_sha256) for k in s.scalars(select(ApiKey))]
    secret = keys.submitter.split("_", 2)[2]
    assert all(secret not in h and len(h) == 64 for _, h in stored)


def test_submit_then_read_back(client: FlaskClient, keys: Keys) -> None:
    video = shared_file("videos/real/retalking_1.mp4").read_bytes()
    response = submit(client, keys.submitter, video, name="../../etc/passwd\x00.mp4", metadata='{"source": "unit"}')
    assert response.status_code == 202, response.json
    job = body(response)
    assert job["status"] == "QUEUED"
    assert job["size_bytes"] == len(video)
    assert job["metadata"] == {"source": "unit"}
    assert "/" not in job["filename"] and "\x00" not in job["filename"]
    fetched = client.get(f"/v1/jobs/{job['id']}", headers=bearer(keys.submitter))
    assert fetched.status_code == 200 and body(fetched)["id"] == job["id"]
    pending = client.get(f"/v1/jobs/{job['id']}/result", headers=bearer(keys.submitter))
    assert pending.status_code == 409 and body(pending)["error"]["code"] == "RESULT_NOT_READY"

    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        row = s.get(Job, uuid.UUID(job["id"]))
        assert row is not None and row.input_key == f"uploads/{job['id']}"
        assert row.enqueued_at is not None, "the job was enqueued after commit"


def test_other_tenant_sees_404(client: FlaskClient, keys: Keys) -> None:
    job = body(submit(client, keys.submitter, tiny_mp4(1)))
    for path in (f"/v1/jobs/{job['id']}", f"/v1/jobs/{job['id']}/result"):
        response = client.get(path, headers=bearer(keys.other_tenant))
        assert response.status_code == 404, path
    assert client.delete(f"/v1/jobs/{job['id']}", headers=bearer(keys.other_tenant)).status_code == 404
    listed = body(client.get("/v1/jobs", headers=bearer(keys.other_tenant)))["jobs"]
    assert job["id"] not in {j["id"] for j in listed}
    assert client.get("/v1/jobs/not-a-uuid", headers=bearer(keys.submitter)).status_code == 404


def test_submitter_cannot_post_feedback(client: FlaskClient, keys: Keys) -> None:
    job = body(submit(client, keys.submitter, tiny_mp4(1)))
    response = client.post(f"/v1/jobs/{job['id']}/feedback", json={"label": "FAKE"}, headers=bearer(keys.submitter))
    assert response.status_code == 403
    assert body(response)["error"]["code"] == "FORBIDDEN"
    early = client.post(f"/v1/jobs/{job['id']}/feedback", json={"label": "FAKE"}, headers=bearer(keys.moderator))
    assert early.status_code == 409


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"", 400, "EMPTY_FILE"),
        (b"this is plain text, not a video\n" * 10, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"PK\x03\x04" + b"\x00" * 200, 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"<!doctype html><html></html>", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (b"#EXTM3U\n#EXT-X-VERSION:3\nhttp://example.com/a.ts\n", 415, "UNSUPPORTED_MEDIA_TYPE"),
    ],
)
def test_bad_uploads_are_refused_with_4xx(
    client: FlaskClient, keys: Keys, payload: bytes, status: int, code: str
) -> None:
    response = submit(client, keys.submitter, payload)
    assert response.status_code == status
    assert body(response)["error"]["code"] == code


def test_missing_file_and_bad_fields(client: FlaskClient, keys: Keys) -> None:
    response = client.post("/v1/jobs", data={}, headers=bearer(keys.submitter))
    assert response.status_code == 400 and body(response)["error"]["code"] == "MISSING_FILE"
    assert submit(client, keys.submitter, MP4_HEAD, metadata="[1]").status_code == 400
    assert submit(client, keys.submitter, MP4_HEAD, max_frames="0").status_code == 400
    assert submit(client, keys.submitter, MP4_HEAD, webhook_url="ftp://example.com/x").status_code == 422


def test_oversized_upload_is_413(services: Services, keys: Keys) -> None:
    from dataclasses import replace

    from api.app import create_app
    from core.settings import get_settings

    app = create_app(replace(get_settings(), max_upload_bytes=1024))
    with app.test_client() as small:
        response = submit(small, keys.submitter, MP4_HEAD + b"\x00" * (3 * 1024 * 1024))
    assert response.status_code == 413
    assert body(response)["error"]["code"] == "REQUEST_ENTITY_TOO_LARGE"


def test_idempotency_key_returns_the_same_job(client: FlaskClient, keys: Keys) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = submit(client, keys.submitter, tiny_mp4(2), idempotency_key=key)
    second = submit(client, keys.submitter, tiny_mp4(2), idempotency_key=key)
    assert first.status_code == 202 and second.status_code == 200
    assert body(first)["id"] == body(second)["id"]
    other = submit(client, keys.other_tenant, tiny_mp4(2), idempotency_key=key)
    assert body(other)["id"] != body(first)["id"], "idempotency keys are scoped per tenant"

    from db.models import Job
    from db.session import session_scope

    with session_scope() as s:
        count = s.scalar(select(func.count()).select_from(Job).where(Job.idempotency_key == key))
    assert count == 2


def test_list_pagination_is_stable(client: FlaskClient, keys: Keys) -> None:
    ids = {body(submit(client, keys.submitter, tiny_mp4(10 + i)))["id"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        query = "/v1/jobs?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = body(client.get(query, headers=bearer(keys.submitter)))
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert ids <= set(seen)
    assert len(seen) == len(set(seen)), "no job appears on two pages"
    assert client.get("/v1/jobs?cursor=garbage", headers=bearer(keys.submitter)).status_code == 400
    assert client.get("/v1/jobs?status=NOPE", headers=bearer(keys.submitter)).status_code == 400


def test_cancel_a_queued_job(client: FlaskClient, keys: Keys) -> None:
    job = body(submit(client, keys.submitter, tiny_mp4(3)))
    response = client.delete(f"/v1/jobs/{job['id']}", headers=bearer(keys.submitter))
    assert response.status_code == 200 and body(response)["status"] == "CANCELLED"
