"""Integration tier: the API, the client and the CLI over HTTP, job claims and fencing, webhooks, metrics and
migrations against real Postgres and Redis on 127.0.0.1 and moto's S3 server. Fixtures shared by
these tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Services, serving
from tests.support.live_api import LIVE_API_KEY_CACHE_S, Tenant, new_tenant


@pytest.fixture(scope="module")
def app(services: Services) -> Flask:
    """The API without rate limits, so a module's many requests all reach the handlers (modules that test the
    limits build their own)."""
    from api.app import create_app
    from core.settings import get_settings

    return create_app(replace(get_settings(), rate_limit_per_min=0, auth_fail_limit_per_min=0))


@pytest.fixture(scope="module")
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


@pytest.fixture(scope="module")
def live_api(services: Services) -> Iterator[str]:
    """The API served over HTTP from a thread, for the Python client and the CLI."""
    from api.app import create_app
    from core.settings import get_settings

    app = create_app(replace(get_settings(), api_key_cache_s=LIVE_API_KEY_CACHE_S))
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def tenant(services: Services) -> Tenant:
    return new_tenant()
