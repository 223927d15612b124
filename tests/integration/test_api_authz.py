"""Authorisation sweep over every route in app.url_map (issue 5 item 13): no key 401, revoked key 401, a role
below the route's 403, another tenant's job 404; the public routes answer without a key."""

from __future__ import annotations

import io
import uuid

import pytest
from flask import Flask
from flask.testing import FlaskClient

from core.vocabulary import Role
from tests.conftest import Keys, Services, bearer
from tests.support.http import body
from tests.support.openapi import UNDOCUMENTED_ENDPOINTS
from tests.support.videos import tiny_mp4

PUBLIC_ENDPOINTS = {"health.healthz", "health.readyz", "metrics.metrics", "review.queue_page", "review.job_page"}
# Routes whose credential is a signature in the URL (a presigned upload's PUT), not a key: unsigned, they refuse.
SIGNED_URL_ENDPOINTS = {"presigned.put_content"}
# Key-or-signed-URL routes whose role check sits in a helper rather than on the view.
ROLE_OVERRIDES = {"review.video": Role.SUBMITTER}
# A valid body, so the tenant check (404) is what answers rather than body validation (400).
BODIES = {
    "feedback.post_feedback": {"label": "FAKE"},
    "streams.post_frames": {"frames": [{"t": 0, "image": "/9j/4A=="}]},
}
BELOW = {Role.MODERATOR: "submitter", Role.ADMIN: "moderator"}


@pytest.fixture(scope="module")
def globex(services: Services) -> dict[str, str]:
    """Keys of every role in another tenant."""
    from db.apikeys import create_key
    from db.session import session_scope

    with session_scope() as s:
        return {role.value: create_key(s, f"globex-{role.value}", "globex", role.value).plaintext for role in Role}


@pytest.fixture(scope="module")
def acme_job(client: FlaskClient, keys: Keys) -> str:
    response = client.post(
        "/v1/jobs",
        data={"file": (io.BytesIO(tiny_mp4(5)), "clip.mp4")},
        headers=bearer(keys.submitter),
        content_type="multipart/form-data",
    )
    assert response.status_code == 202, response.json
    return str(body(response)["id"])


def required_role(app: Flask, endpoint: str) -> Role | None:
    return ROLE_OVERRIDES.get(endpoint) or getattr(app.view_functions[endpoint], "required_role", None)


def routes(app: Flask, job_id: str) -> list[tuple[str, str, str]]:
    """(endpoint, method, url) for every route, path parameters filled with acme's job and made-up ids."""
    values = {"version": "v-none", "job_id": job_id, "n": "0"} | {
        name: str(uuid.uuid4()) for name in ("delivery_id", "batch_id", "upload_id")
    }
    found = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        url = rule.rule
        for name in rule.arguments:
            url = url.replace(f"<{name}>", values[name])
        found += [(rule.endpoint, m, url) for m in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})]
    return found


def test_every_route_is_either_public_or_needs_a_role(app: Flask, acme_job: str) -> None:
    classified = PUBLIC_ENDPOINTS | SIGNED_URL_ENDPOINTS
    unclassified = [e for e, _, _ in routes(app, acme_job) if e not in classified and not required_role(app, e)]
    assert not unclassified, f"routes with neither require_role nor a place in PUBLIC_ENDPOINTS: {unclassified}"


def test_authorisation_sweep(
    app: Flask, client: FlaskClient, keys: Keys, globex: dict[str, str], acme_job: str
) -> None:
    checked = 0
    for endpoint, method, url in routes(app, acme_job):
        role = required_role(app, endpoint)
        if endpoint in SIGNED_URL_ENDPOINTS:
            assert client.open(url, method=method, data=b"video").status_code in (400, 401), (method, url)
            continue
        if role is None:
            assert client.open(url, method=method).status_code < 400, (method, url)
            continue
        for label, headers in (("no key", {}), ("revoked", bearer(keys.revoked)), ("bad", bearer("vrt_x_y"))):
            response = client.open(url, method=method, headers=headers)
            assert response.status_code == 401, (label, method, url, response.status_code)
            assert body(response)["error"]["code"] == "UNAUTHENTICATED"
        if role in BELOW:
            below = getattr(keys, BELOW[role])
            response = client.open(url, method=method, headers=bearer(below))
            assert response.status_code == 403, (method, url, response.status_code)
            assert body(response)["error"]["code"] == "FORBIDDEN"
        if "<job_id>" in next(r.rule for r in app.url_map.iter_rules() if r.endpoint == endpoint):
            response = client.open(url, method=method, headers=bearer(globex[role.value]), json=BODIES.get(endpoint))
            assert response.status_code == 404, ("other tenant", method, url, response.status_code)
            assert body(response)["error"]["code"] == "NOT_FOUND"
        checked += 1
    assert checked >= 20
