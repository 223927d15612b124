"""The served OpenAPI document: it validates, lists every route with its responses, the docs page needs no
network, and the API process never imports torch."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import REPO, Services
from tests.support.http import body
from tests.support.openapi import UNDOCUMENTED_ENDPOINTS


@pytest.fixture(scope="module")
def app(services: Services) -> Flask:
    from api.app import create_app

    return create_app()


@pytest.fixture(scope="module")
def client(app: Flask) -> Iterator[FlaskClient]:
    with app.test_client() as c:
        yield c


def spec_path(rule: str) -> str:
    return rule.replace("<path:", "<").replace("<", "{").replace(">", "}")


def test_the_spec_validates_as_openapi_31(client: FlaskClient) -> None:
    from openapi_spec_validator import validate

    document = body(client.get("/openapi.json"))
    assert document["openapi"].startswith("3.1")
    validate(document)


def test_every_route_is_in_the_spec_with_its_responses(app: Flask, client: FlaskClient) -> None:
    document = body(client.get("/openapi.json"))
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED_ENDPOINTS:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            operation = document["paths"].get(spec_path(rule.rule), {}).get(method.lower())
            if operation is None:
                missing.append(f"{method} {rule.rule} ({rule.endpoint})")
                continue
            responses = operation["responses"]
            assert any(code.startswith("2") for code in responses), (rule.rule, method)
            errors = [r for code, r in responses.items() if code[0] in "45"]
            # Every error is documented in the one shape.
            for response in errors:
                if "content" in response:  # /readyz's 503 is its readiness report
                    schema = response["content"]["application/json"]["schema"]["$ref"]
                    assert schema.endswith(("/ErrorBody", "/Readiness")), (rule.rule, schema)
            if operation.get("security") != []:
                assert {"401", "429"} <= set(responses), (rule.rule, method)
    assert not missing, f"routes missing from the OpenAPI document: {missing}"


def test_docs_page_is_self_contained(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "/openapi.json" in html and "http://" not in html and "https://" not in html
    script = client.get("/docs/redoc.js")
    assert script.status_code == 200 and len(script.data) > 100_000


def test_the_api_never_imports_torch() -> None:
    probe = "import sys, api.app; api.app.create_app(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr[-2000:]
