"""Presigned uploads against moto's S3 server: PUT to the presigned URL, submit by upload_id once; an upload never
made, used twice, another tenant's or expired is refused with its code; the reaper removes expired ones."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from flask.testing import FlaskClient

from tests.conftest import Keys, Services, bearer, shared_file
from tests.support.http import body
from tests.support.live_api import Tenant
from tests.support.videos import CLIP

MULTIPART = "multipart/form-data"


def _new_upload(client: FlaskClient, key: str) -> dict[str, Any]:
    response = client.post("/v1/uploads", headers=bearer(key))
    assert response.status_code == 201, response.json
    return body(response)


def _submit(client: FlaskClient, key: str, upload_id: str, idempotency_key: str | None = None) -> Any:
    headers = bearer(key) | ({"Idempotency-Key": idempotency_key} if idempotency_key else {})
    return client.post("/v1/jobs", data={"upload_id": upload_id}, headers=headers, content_type=MULTIPART)


def test_a_presigned_upload_is_put_to_s3_and_submitted_once(client: FlaskClient, keys: Keys) -> None:
    clip = shared_file(CLIP).read_bytes()
    upload = _new_upload(client, keys.submitter)
    assert upload["method"] == "PUT" and upload["max_bytes"] > len(clip)
    put = requests.put(upload["url"], data=clip, timeout=30)
    assert put.status_code == 200, put.text
    response = _submit(client, keys.submitter, upload["upload_id"])
    assert response.status_code == 202, response.json
    job = body(response)
    assert job["sha256"] == hashlib.sha256(clip).hexdigest() and job["content_type"] == "video/mp4"
    again = _submit(client, keys.submitter, upload["upload_id"])
    assert again.status_code == 409 and body(again)["error"]["code"] == "UPLOAD_USED"


def test_uploads_never_made_unknown_or_of_another_tenant_are_refused(client: FlaskClient, keys: Keys) -> None:
    upload = _new_upload(client, keys.submitter)
    empty = _submit(client, keys.submitter, upload["upload_id"])
    assert empty.status_code == 400 and body(empty)["error"]["code"] == "UPLOAD_EMPTY"
    for key, upload_id in ((keys.submitter, str(uuid.uuid4())), (keys.other_tenant, upload["upload_id"])):
        missing = _submit(client, key, upload_id)
        assert missing.status_code == 404 and body(missing)["error"]["code"] == "UPLOAD_NOT_FOUND"


def test_an_upload_that_is_not_a_video_is_refused_like_a_file(client: FlaskClient, keys: Keys) -> None:
    upload = _new_upload(client, keys.submitter)
    assert requests.put(upload["url"], data=b"<html>" * 100, timeout=30).status_code == 200
    refused = _submit(client, keys.submitter, upload["upload_id"])
    assert refused.status_code == 415 and body(refused)["error"]["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_an_expired_upload_is_refused_and_the_reaper_removes_it_with_its_object(
    services: Services, client: FlaskClient, keys: Keys
) -> None:
    from core.settings import get_settings
    from core.storage import ObjectMissing, get_store
    from db.models import Upload
    from db.session import session_scope
    from workers import reaper

    upload = _new_upload(client, keys.submitter)
    assert requests.put(upload["url"], data=b"\0" * 1000, timeout=30).status_code == 200
    upload_id = uuid.UUID(upload["upload_id"])
    with session_scope() as session:
        row = session.get(Upload, upload_id)
        assert row is not None
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
        key = row.object_key
    expired = _submit(client, keys.submitter, upload["upload_id"])
    assert expired.status_code == 422 and body(expired)["error"]["code"] == "UPLOAD_EXPIRED"
    report = reaper.reap(get_settings())
    assert str(upload_id) in report.removed_uploads
    with session_scope() as session:
        assert session.get(Upload, upload_id) is None
    with pytest.raises(ObjectMissing):
        get_store().download_to(key, services.home / "expired-upload")


def test_the_local_put_endpoint_refuses_an_unsigned_or_expired_url(client: FlaskClient) -> None:
    upload_id = uuid.uuid4()
    for query in ("expires=9999999999&signature=forged", "expires=1&signature=x"):
        refused = client.put(f"/v1/uploads/{upload_id}/content?{query}", data=b"video")
        assert refused.status_code == 401 and body(refused)["error"]["code"] == "UNAUTHENTICATED"


def test_the_client_uploads_through_a_presigned_url_with_progress_and_submits_by_url(
    live_api: str, tenant: Tenant
) -> None:
    from client.api import VerityClient

    path = shared_file(CLIP)
    seen: list[tuple[int, int]] = []
    with VerityClient(live_api, tenant.submitter) as verity:
        job = verity.submit_presigned(path, lambda sent, total: seen.append((sent, total)), max_frames=8)
        assert job["status"] == "QUEUED" and job["params"]["max_frames"] == 8
        assert seen[-1] == (path.stat().st_size, path.stat().st_size)
        by_url = verity.submit_url("https://media.example.invalid/clip.mp4", idempotency_key="by-url-1")
        assert by_url["status"] == "QUEUED" and by_url["sha256"] is None
        assert (
            verity.submit_url("https://media.example.invalid/clip.mp4", idempotency_key="by-url-1")["id"]
            == by_url["id"]
        )


def test_a_retried_upload_submission_replays_its_job(client: FlaskClient, keys: Keys) -> None:
    upload = _new_upload(client, keys.submitter)
    assert requests.put(upload["url"], data=shared_file(CLIP).read_bytes(), timeout=30).status_code == 200
    first = _submit(client, keys.submitter, upload["upload_id"], idempotency_key="retry-upload-1")
    assert first.status_code == 202, first.json
    retry = _submit(client, keys.submitter, upload["upload_id"], idempotency_key="retry-upload-1")
    assert retry.status_code == 200 and retry.headers["Idempotent-Replayed"] == "true", retry.json
    assert body(retry)["id"] == body(first)["id"]
    other = _submit(client, keys.submitter, upload["upload_id"], idempotency_key="retry-upload-2")
    assert other.status_code == 409 and body(other)["error"]["code"] == "UPLOAD_USED"


def test_the_local_put_endpoint_takes_a_signed_upload_that_a_job_then_uses(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The embedded store (a local folder, no S3) honours the same contract through the API's own signed PUT."""
    from api.app import create_app
    from core.settings import get_settings
    from core.storage import LocalFolderStore, get_store
    from tests.conftest import reset_caches

    monkeypatch.delenv("S3_BUCKET")
    monkeypatch.delenv("S3_ENDPOINT_URL")
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    reset_caches()
    try:
        assert isinstance(get_store(), LocalFolderStore)
        local = create_app(replace(get_settings(), rate_limit_per_min=0, auth_fail_limit_per_min=0)).test_client()
        clip = shared_file(CLIP).read_bytes()
        upload = _new_upload(local, keys.submitter)
        url = urlsplit(upload["url"])
        assert url.path == f"/v1/uploads/{upload['upload_id']}/content"
        put = local.put(f"{url.path}?{url.query}", data=clip)
        assert put.status_code == 204, put.get_data(as_text=True)
        response = _submit(local, keys.submitter, upload["upload_id"])
        assert response.status_code == 202, response.json
        assert body(response)["sha256"] == hashlib.sha256(clip).hexdigest()
        again = local.put(f"{url.path}?{url.query}", data=clip)
        assert again.status_code == 409 and body(again)["error"]["code"] == "UPLOAD_USED"
    finally:
        monkeypatch.undo()
        reset_caches()
