"""The object store under the review media routes (fast, default suite): 503 with Retry-After while it is
unreachable, 404 when the object is gone, the same on every route that reads the stored video."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import EndpointConnectionError
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from tests.conftest import Keys, Services, bearer, insert_job
from tests.support.http import body
from tests.support.services import free_port

ROUTES = ("/v1/jobs/{id}/video", "/v1/jobs/{id}/frames.jpg")


@pytest.fixture(scope="module")
def client(services: Services) -> Iterator[FlaskClient]:
    from api.app import create_app

    app = create_app()
    app.testing = True
    with app.test_client() as client:
        yield client


def _scored_job() -> uuid.UUID:
    """A finished job with one scored face frame; its upload was never stored."""
    from db.models import FrameScore
    from db.session import session_scope

    job_id = insert_job("acme", "SUCCEEDED", content_type="video/mp4")
    box = {"x1": 1.0, "y1": 1.0, "x2": 9.0, "y2": 9.0}
    with session_scope() as s:
        s.add(
            FrameScore(
                job_id=job_id, frame_index=0, timestamp_s=0.0, track_id=0, box=box, face_prob=1.0, model="m", score=0.5
            )
        )
    return job_id


def _assert_store_unavailable(response: TestResponse) -> None:
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "5"
    assert body(response)["error"]["code"] == "STORAGE_UNAVAILABLE"


@pytest.mark.parametrize("route", ROUTES)
def test_an_unreachable_store_is_503_with_retry_after(
    client: FlaskClient, keys: Keys, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    import api.review.media
    from core.storage import S3Store

    down = S3Store("verity-test", f"http://127.0.0.1:{free_port()}", "us-east-1")  # nothing listens there
    monkeypatch.setattr(api.review.media, "get_store", lambda: down)  # every review route reads the store there
    _assert_store_unavailable(client.get(route.format(id=_scored_job()), headers=bearer(keys.submitter)))


@pytest.mark.parametrize("route", ROUTES)
def test_a_stored_video_that_is_gone_is_404(client: FlaskClient, keys: Keys, route: str) -> None:
    response = client.get(route.format(id=_scored_job()), headers=bearer(keys.submitter))
    assert response.status_code == 404, response.get_data(as_text=True)
    assert body(response)["error"]["code"] == "NOT_FOUND"


def test_a_store_lost_between_size_and_read_is_503_not_a_broken_stream(
    client: FlaskClient, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The object is opened before the status is sent, so a store lost in between still gets a clean 503."""
    from core.storage import get_store

    job_id = _scored_job()
    store = get_store()
    store.client.put_object(Bucket=store.bucket, Key=f"uploads/{job_id}", Body=b"\x00" * 4096)  # type: ignore[attr-defined]

    def lost(**_: object) -> None:
        raise EndpointConnectionError(endpoint_url="http://store")

    monkeypatch.setattr(store.client, "get_object", lost)  # type: ignore[attr-defined]
    headers = {**bearer(keys.submitter), "Range": "bytes=0-99"}
    _assert_store_unavailable(client.get(f"/v1/jobs/{job_id}/video", headers=headers))
    monkeypatch.undo()
    whole = client.get(f"/v1/jobs/{job_id}/video", headers=headers)
    assert whole.status_code == 206 and whole.data == b"\x00" * 100
