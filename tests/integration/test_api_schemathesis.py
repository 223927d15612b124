"""Schemathesis over the served spec against the WSGI app, authenticated as an admin (who may call every
route): no 5xx, and every response matches its documented status, content type, headers and schema."""

from __future__ import annotations

from dataclasses import replace

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from tests.conftest import Keys, Services, bearer


@pytest.fixture(scope="module")
def admin_key(keys: Keys) -> str:
    return keys.admin


@pytest.fixture(scope="module")
def fuzz_app(services: Services) -> Flask:
    from api.app import create_app
    from db.settings import get_settings

    # No rate limit here: the fuzzer's few hundred requests must reach the handlers.
    return create_app(replace(get_settings(), rate_limit_per_min=0))


@pytest.fixture(scope="module")
def api_schema(fuzz_app: Flask) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_wsgi("/openapi.json", fuzz_app)


def test_no_server_errors_and_no_schema_violations(api_schema: schemathesis.schemas.BaseSchema, admin_key: str) -> None:
    failures: dict[str, str] = {}
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 20
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=8, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                headers={**(case.headers or {}), **bearer(admin_key)},
                # A schema-valid upload is any bytes, yet only a real video is accepted (415 / 422): JSON Schema
                # cannot say "a playable MP4", so the "valid data must be accepted" heuristic does not apply.
                excluded_checks=[positive_data_acceptance],
            )

        try:
            call()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures[operation.label] = str(exc)[:2000]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
