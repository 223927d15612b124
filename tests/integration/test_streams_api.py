"""The live-stream routes without a stream worker (issue 14 item 4): what opening a session checks, the frame
limits (size, type, rate, backlog), tenant isolation on every route and on the WebSocket, and the WebSocket's
authentication (a header before the upgrade, or a first message; never the URL)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import simple_websocket
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Keys, Services, bearer, serving
from tests.support.http import body
from tests.support.live_api import Tenant, new_tenant

JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 64  # the magic bytes are what the API checks; the worker decodes
QUICK = {"kind": "per_frame", "window": 4, "min_frames": 2}


@pytest.fixture(scope="module")
def app(services: Services) -> Flask:
    """Small limits, so each one is reached in a few requests."""
    from api.app import create_app
    from core.settings import get_settings
    from core.streams.limits import StreamLimits

    settings = replace(
        get_settings(),
        rate_limit_per_min=0,
        auth_fail_limit_per_min=0,
        streams=StreamLimits(max_sessions_per_key=2, max_frame_bytes=4096, max_fps=4.0, backlog=2),
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


@pytest.fixture
def acme() -> Tenant:
    return new_tenant()  # a fresh key per test: the per-key session limit starts at zero


def frames_body(*images: bytes, start: float = 0.0) -> dict[str, Any]:
    return {"frames": [{"t": start + i / 2, "image": base64.b64encode(im).decode()} for i, im in enumerate(images)]}


def open_stream(client: FlaskClient, key: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/v1/streams", json={"strategy": QUICK, **fields}, headers=bearer(key))
    assert response.status_code == 201, response.json
    return body(response)


def error_code(response: Any) -> str:
    return str(body(response)["error"]["code"])


def test_opening_a_stream_returns_where_to_send_frames(client: FlaskClient, acme: Tenant) -> None:
    stream = open_stream(client, acme.submitter, metadata={"camera": 3})
    sid = stream["id"]
    assert stream["status"] == "open" and stream["updates"] == "changes"
    assert stream["strategy"]["kind"] == "per_frame" and stream["strategy"]["window"] == 4
    assert stream["links"]["websocket"] == f"/v1/streams/{sid}/ws"
    assert stream["links"]["frames"] == f"/v1/streams/{sid}/frames" and stream["links"]["job"] == f"/v1/jobs/{sid}"
    assert stream["frames"] == {"received": 0, "scored": 0, "with_face": 0, "dropped": 0}
    job = body(client.get(f"/v1/jobs/{sid}", headers=bearer(acme.submitter)))
    assert job["status"] == "STREAMING" and job["metadata"] == {"camera": 3}


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({"strategy": {"kind": "rolling"}}, 422, "INVALID_STRATEGY"),
        ({"strategy": {"kind": "window", "window": 0}}, 422, "INVALID_STRATEGY"),
        ({"strategy": {"kind": "window", "t_low": 0.2}}, 422, "INVALID_STRATEGY"),
        ({"strategy": {"kind": "window", "surprise": 1}}, 422, "INVALID_STRATEGY"),
        ({"strategy": QUICK, "webhook_url": "ftp://example.com/hook"}, 422, "INVALID_WEBHOOK_URL"),
        ({"strategy": QUICK, "updates": "sometimes"}, 400, "INVALID_PARAMETER"),
        ({"strategy": QUICK, "extra": 1}, 400, "INVALID_PARAMETER"),
    ],
)
def test_a_bad_stream_request_is_refused_with_its_reason(
    client: FlaskClient, keys: Keys, payload: dict[str, Any], status: int, code: str
) -> None:
    response = client.post("/v1/streams", json=payload, headers=bearer(keys.admin))
    assert response.status_code == status, response.json
    assert error_code(response) == code


def test_a_key_has_at_most_its_open_sessions(client: FlaskClient, acme: Tenant) -> None:
    open_stream(client, acme.submitter)
    open_stream(client, acme.submitter)
    third = client.post("/v1/streams", json={"strategy": QUICK}, headers=bearer(acme.submitter))
    assert third.status_code == 429 and error_code(third) == "TOO_MANY_STREAMS"
    assert third.headers["Retry-After"]
    open_stream(client, acme.moderator)  # another key of the tenant has its own allowance


def test_frames_are_checked_and_the_oldest_waiting_one_dropped(client: FlaskClient, acme: Tenant) -> None:
    sid = open_stream(client, acme.submitter)["id"]
    url, auth = f"/v1/streams/{sid}/frames", bearer(acme.submitter)
    too_big = client.post(url, json=frames_body(JPEG + b"\x00" * 5000), headers=auth)
    assert too_big.status_code == 413 and error_code(too_big) == "FRAME_TOO_LARGE"
    gif = client.post(url, json=frames_body(b"GIF89a" + b"\x00" * 16), headers=auth)
    assert gif.status_code == 415 and error_code(gif) == "UNSUPPORTED_FRAME"
    not_base64 = client.post(url, json={"frames": [{"t": 0, "image": "%%%"}]}, headers=auth)
    assert not_base64.status_code == 400
    negative = client.post(url, json={"frames": [{"t": -1, "image": "AAAA"}]}, headers=auth)
    assert negative.status_code == 400

    # No worker reads them: a backlog of 2, so the third and fourth frames each drop the oldest waiting one.
    accepted = client.post(url, json=frames_body(JPEG, JPEG, JPEG, JPEG), headers=auth)
    assert accepted.status_code == 202, accepted.json
    assert body(accepted) == {"seqs": [1, 2, 3, 4], "frames_received": 4, "frames_dropped": 2}
    view = body(client.get(f"/v1/streams/{sid}", headers=auth))
    assert view["frames"] == {"received": 4, "scored": 0, "with_face": 0, "dropped": 2}

    over_rate = client.post(url, json=frames_body(JPEG), headers=auth)  # a fifth frame within the same second
    if over_rate.status_code != 202:  # unless the second turned meanwhile
        assert over_rate.status_code == 429 and error_code(over_rate) == "FRAME_RATE_EXCEEDED"


def test_a_closing_stream_takes_no_more_frames(client: FlaskClient, acme: Tenant) -> None:
    sid = open_stream(client, acme.submitter)["id"]
    auth = bearer(acme.submitter)
    closing = client.delete(f"/v1/streams/{sid}", headers=auth)
    assert closing.status_code == 202 and body(closing)["status"] == "closing"  # no worker to close it here
    refused = client.post(f"/v1/streams/{sid}/frames", json=frames_body(JPEG), headers=auth)
    assert refused.status_code == 409 and error_code(refused) == "STREAM_CLOSED"


def test_another_tenant_sees_no_stream(client: FlaskClient, acme: Tenant, keys: Keys) -> None:
    sid = open_stream(client, acme.submitter)["id"]
    other = bearer(keys.other_tenant)
    for method, path, payload in (
        ("GET", f"/v1/streams/{sid}", None),
        ("DELETE", f"/v1/streams/{sid}", None),
        ("POST", f"/v1/streams/{sid}/frames", frames_body(JPEG)),
        ("GET", f"/v1/streams/{sid}/events", None),
        ("GET", f"/v1/streams/{uuid.uuid4()}", None),
        ("GET", "/v1/streams/not-a-uuid", None),
    ):
        response = client.open(path, method=method, headers=other, json=payload)
        assert response.status_code == 404 and error_code(response) == "NOT_FOUND", (method, path)
    assert body(client.get(f"/v1/streams/{sid}", headers=bearer(acme.submitter)))["status"] == "open"


def test_a_plain_get_of_the_websocket_route_is_refused_in_the_error_shape(client: FlaskClient, acme: Tenant) -> None:
    sid = open_stream(client, acme.submitter)["id"]
    response = client.get(f"/v1/streams/{sid}/ws", headers=bearer(acme.submitter))
    assert response.status_code == 400 and set(body(response)) == {"error"}


@pytest.fixture(scope="module")
def live(app: Flask) -> Iterator[str]:
    with serving(app) as url:
        yield url.replace("http://", "ws://")


def _messages(ws: simple_websocket.Client) -> list[dict[str, Any]]:
    out = []
    try:
        while (raw := ws.receive(timeout=5)) is not None:
            out.append(json.loads(raw))
    except simple_websocket.ConnectionClosed:
        pass
    return out


def test_the_websocket_authenticates_before_the_upgrade_by_header(
    client: FlaskClient, live: str, acme: Tenant, keys: Keys
) -> None:
    sid = open_stream(client, acme.submitter)["id"]
    for key, status in ((keys.other_tenant, 404), (keys.revoked, 401), ("vrt_x_y", 401)):
        with pytest.raises(simple_websocket.ConnectionError) as refused:
            simple_websocket.Client.connect(f"{live}/v1/streams/{sid}/ws", headers=bearer(key))
        assert refused.value.status_code == status, key
    ws = simple_websocket.Client.connect(f"{live}/v1/streams/{sid}/ws", headers=bearer(acme.submitter))
    ws.send(JPEG)
    ws.send(json.dumps({"type": "frame", "t": 1.0, "image": "%%%"}))
    errors = [m for m in _messages(ws) if m["type"] == "error"]
    ws.close()
    assert [e["error"]["code"] for e in errors] == ["INVALID_MESSAGE"]  # the JPEG was queued, the bad one refused
    view = body(client.get(f"/v1/streams/{sid}", headers=bearer(acme.submitter)))
    assert view["frames"]["received"] == 1


def test_the_websocket_authenticates_by_its_first_message(
    client: FlaskClient, live: str, acme: Tenant, keys: Keys
) -> None:
    sid = open_stream(client, acme.submitter)["id"]
    url = f"{live}/v1/streams/{sid}/ws?key={acme.submitter}"  # a key in the URL is never read
    ws = simple_websocket.Client.connect(url)
    ws.send(JPEG)
    refused = _messages(ws)
    assert refused and refused[0]["error"]["code"] == "UNAUTHENTICATED"

    ws = simple_websocket.Client.connect(f"{live}/v1/streams/{sid}/ws")
    ws.send(json.dumps({"type": "auth", "key": keys.other_tenant}))
    assert _messages(ws)[0]["error"]["code"] == "NOT_FOUND"

    ws = simple_websocket.Client.connect(f"{live}/v1/streams/{sid}/ws")
    ws.send(json.dumps({"type": "auth", "key": acme.submitter}))
    ws.send(json.dumps({"type": "frame", "t": 0.5, "image": base64.b64encode(JPEG).decode()}))
    ws.send(json.dumps({"type": "close"}))
    assert not [m for m in _messages(ws) if m["type"] == "error"]
    ws.close()
    view = body(client.get(f"/v1/streams/{sid}", headers=bearer(acme.submitter)))
    assert view["frames"]["received"] == 1 and view["status"] == "closing"


def test_the_review_page_gets_a_stream_s_decision_timeline(client: FlaskClient, acme: Tenant) -> None:
    sid = open_stream(client, acme.submitter)["id"]
    review = body(client.get(f"/v1/review/jobs/{sid}", headers=bearer(acme.moderator)))
    assert review["stream"] == {"status": "open", "t_low": None, "t_high": None, "frames": []}
    assert review["job"]["params"]["sampling"] == "stream"


def test_without_the_broker_opening_a_stream_is_503_and_leaves_nothing(services: Services, acme: Tenant) -> None:
    from sqlalchemy import func, select

    from api.app import create_app
    from core.settings import get_settings
    from db.models import StreamSession
    from db.session import session_scope

    unreachable = replace(
        get_settings(), broker_url="redis://127.0.0.1:1/0", rate_limit_per_min=0, auth_fail_limit_per_min=0
    )
    with create_app(unreachable).test_client() as down:
        response = down.post("/v1/streams", json={"strategy": QUICK}, headers=bearer(acme.submitter))
    assert response.status_code == 503 and error_code(response) == "STREAMS_UNAVAILABLE"
    with session_scope() as session:
        left = session.scalar(select(func.count()).select_from(StreamSession).where(StreamSession.tenant == acme.name))
    assert left == 0
