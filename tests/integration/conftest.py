"""Fixtures shared by the API integration tests."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Services


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
