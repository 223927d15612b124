"""The hostile-input corpus (issue 12 item 7): every operation in the served OpenAPI document gets each family of
hostile input (NUL characters, unpaired surrogates, NaN and Infinity, nesting that would raise RecursionError,
oversize bodies, wrong content types, duplicate multipart parts, header and query abuse) in its path, query,
headers and body. No answer may be a 5xx, and every error must have the one JSON shape."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import quote

import pytest
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Keys, Services, bearer
from tests.support.http import body
from tests.support.videos import tiny_mp4

UPLOAD_CAP = 100_000
DEEP = 10_000  # levels: ten times Python's default recursion limit
NUL = "\u0000"
SURROGATE_UTF8 = "%ED%A0%80"  # the UTF-8 bytes of \ud800 in a URL; werkzeug decodes them to U+FFFD


@dataclass(frozen=True)
class Operation:
    method: str
    path: str  # the spec's template, e.g. /v1/jobs/{job_id}
    path_params: tuple[str, ...]
    query_params: tuple[str, ...]
    json_fields: tuple[str, ...] | None  # None: no JSON body
    form_fields: tuple[str, ...] | None  # None: no multipart body

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


@dataclass(frozen=True)
class Attack:
    label: str
    path_values: dict[str, str] = field(default_factory=dict)  # raw (already percent-encoded) path values
    query: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None
    content_type: str | None = None


def multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    """(name, filename or None for a text field, content) parts, encoded by hand so duplicates and raw bytes go
    out exactly as written."""
    boundary = f"hostile{uuid.uuid4().hex}"
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def parts_attack(label: str, *parts: tuple[str, str | None, bytes]) -> Attack:
    body, content_type = multipart(*parts)
    return Attack(label, body=body, content_type=content_type)


def upload_attack(label: str, *extra: tuple[str, str | None, bytes], file: bytes | None = None) -> Attack:
    """A valid video plus ``extra`` parts (or, with ``file``, that file instead)."""
    return parts_attack(label, ("file", "clip.mp4", tiny_mp4(1) if file is None else file), *extra)


def json_attack(label: str, raw: str | bytes, content_type: str = "application/json") -> Attack:
    return Attack(label, body=raw.encode() if isinstance(raw, str) else raw, content_type=content_type)


def each_path_value(op: Operation, label: str, value: str) -> list[Attack]:
    return [Attack(f"{label} in path {name}", path_values={name: value}) for name in op.path_params]


def each_query_value(op: Operation, label: str, value: str) -> list[Attack]:
    named = [Attack(f"{label} in query {name}", query=f"{name}={value}") for name in op.query_params]
    return [*named, Attack(f"{label} in an undeclared query parameter", query=f"x={value}&y{value}=1")]


def each_json_field(op: Operation, label: str, raw_value: str) -> list[Attack]:
    """A JSON body with ``raw_value`` (JSON text) in each declared field in turn, sent to every operation: one
    without a JSON body must ignore it."""
    fields = op.json_fields or ("note",)
    return [json_attack(f"{label} in JSON field {name}", f'{{"{name}": {raw_value}}}') for name in fields]


def each_form_field(op: Operation, label: str, raw: bytes) -> list[Attack]:
    fields = [f for f in op.form_fields or () if f != "file"]
    return [upload_attack(f"{label} in form field {name}", (name, None, raw)) for name in fields]


def nul(op: Operation) -> list[Attack]:
    return [
        *each_path_value(op, "NUL", "a%00b"),
        *each_query_value(op, "NUL", "a%00b"),
        Attack("NUL in a header", headers={"Idempotency-Key": f"k{NUL}", "X-Request-ID": f"r{NUL}"}),
        *each_json_field(op, "NUL", '"a\\u0000b"'),
        json_attack("NUL in a JSON key", '{"a\\u0000": 1}'),
        json_attack("raw NUL byte in a JSON string", b'{"note": "a\x00b"}'),
        *each_form_field(op, "NUL", b"a\x00b"),
        upload_attack("NUL in a metadata value", ("metadata", None, b'{"k": "a\\u0000b"}')),
        upload_attack("NUL in a metadata key", ("metadata", None, b'{"a\\u0000": 1}')),
    ]


def surrogate(op: Operation) -> list[Attack]:
    return [
        *each_path_value(op, "surrogate", SURROGATE_UTF8),
        *each_query_value(op, "surrogate", SURROGATE_UTF8),
        *each_json_field(op, "surrogate", '"a\\ud800b"'),
        json_attack("surrogate in a JSON key", '{"\\udfff": 1}'),
        json_attack("surrogate as raw UTF-8 bytes", b'{"note": "\xed\xa0\x80"}'),
        *each_form_field(op, "surrogate", b"\xed\xa0\x80"),
        upload_attack("surrogate in a metadata value", ("metadata", None, b'{"k": "\\ud800"}')),
        upload_attack("surrogate in a metadata key", ("metadata", None, b'{"\\udbff": 1}')),
    ]


def non_finite(op: Operation) -> list[Attack]:
    attacks = []
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        attacks += [
            *each_query_value(op, token, token),
            *each_json_field(op, token, token),
            json_attack(f"{token} nested", f'{{"a": [1, {{"b": {token}}}]}}'),
            upload_attack(f"{token} in metadata", ("metadata", None, f'{{"x": {token}}}'.encode())),
            upload_attack(f"{token} as max_frames", ("max_frames", None, token.encode())),
        ]
    return attacks


def deep_nesting(op: Operation) -> list[Attack]:
    """Python's json recurses once per level: each of these would raise RecursionError if it were parsed."""
    return [
        json_attack("10,000 levels of [", "[" * DEEP + "]" * DEEP),
        json_attack("10,000 levels of {", '{"a":' * DEEP + "1" + "}" * DEEP),
        json_attack("10,000 unclosed [", "[" * DEEP),
        json_attack("deep inside a field", '{"note": ' + "[" * DEEP + "]" * DEEP + "}"),
        upload_attack("8,000 levels in metadata", ("metadata", None, b"[" * 8000 + b"]" * 8000)),
        upload_attack("8,000 levels of objects in metadata", ("metadata", None, b'{"a":' * 3000 + b"1" + b"}" * 3000)),
        Attack("deep JSON in a query value", query="cursor=" + quote("[" * 300 + "]" * 300)),
    ]


def oversize(op: Operation) -> list[Attack]:
    return [
        json_attack("a JSON body over 64 KiB", '{"note": "' + "x" * 70_000 + '"}'),
        json_attack("a 1 MiB JSON body", "[" + "1," * 500_000 + "1]"),
        upload_attack("a file over the upload cap", file=tiny_mp4(1) + b"\x00" * UPLOAD_CAP),
        upload_attack("metadata over 16,384 characters", ("metadata", None, b'{"a": "' + b"x" * 20_000 + b'"}')),
        upload_attack("a 600 kB text field", ("webhook_url", None, b"x" * 600_000)),
        upload_attack("20 parts", *((f"f{i}", None, b"x") for i in range(20))),
        Attack("a 100 kB query value", query="cursor=" + "x" * 100_000),
        Attack("2,000 query parameters", query="&".join(f"p{i}={i}" for i in range(2000))),
        Attack("a 100 kB header", headers={"X-Request-ID": "x" * 100_000}),
        Attack("a 300-character Idempotency-Key", headers={"Idempotency-Key": "k" * 300}),
    ]


def content_type(op: Operation) -> list[Attack]:
    json_body = b'{"label": "FAKE"}'
    form_body, form_type = multipart(("file", "clip.mp4", tiny_mp4(1)))
    return [
        json_attack("JSON as text/plain", json_body, "text/plain"),
        json_attack("JSON as XML", b"<label>FAKE</label>", "application/xml"),
        json_attack("JSON as a urlencoded form", b"label=FAKE", "application/x-www-form-urlencoded"),
        json_attack("a body with no Content-Type", json_body, ""),
        json_attack("UTF-16 JSON", '{"label": "FAKE"}'.encode("utf-16"), "application/json; charset=utf-16"),
        json_attack("not JSON at all", b"\xff\xfe\x00garbage", "application/json"),
        json_attack("JSON null", b"null"),
        json_attack("a JSON string", b'"FAKE"'),
        json_attack("a multipart body to a JSON route", form_body, form_type),
        json_attack("multipart without a boundary", form_body, "multipart/form-data"),
        json_attack("multipart with a wrong boundary", form_body, "multipart/form-data; boundary=nope"),
        json_attack("a truncated multipart body", form_body[: len(form_body) // 2], form_type),
        json_attack("a video as application/octet-stream", tiny_mp4(1), "application/octet-stream"),
    ]


def duplicate_parts(op: Operation) -> list[Attack]:
    return [
        upload_attack("two file parts", ("file", "second.mp4", tiny_mp4(2))),
        parts_attack("the file under another name", ("video", "clip.mp4", tiny_mp4(1))),
        upload_attack("a text field named file too", ("file", None, b"text")),
        upload_attack("two metadata fields", ("metadata", None, b"{}"), ("metadata", None, b'{"a": 1}')),
        upload_attack("an unknown form field", ("colour", None, b"blue")),
        upload_attack("a file under an unknown name too", ("extra", "x.bin", b"\x00\x01")),
        json_attack("a duplicated JSON key", '{"label": "FAKE", "label": "REAL"}'),
        json_attack("an unknown JSON field", '{"label": "FAKE", "admin": true}'),
        *each_query_value(op, "a repeated parameter", "1&" + "&".join(f"{p}=2" for p in op.query_params)),
    ]


def header_abuse(op: Operation) -> list[Attack]:
    return [
        Attack("a 10 kB bearer token", headers={"Authorization": "Bearer " + "x" * 10_000}),
        Attack("Bearer with no token", headers={"Authorization": "Bearer"}),
        Attack("Basic credentials", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
        Attack("a well-formed unknown key", headers={"Authorization": "Bearer vrt_000000000000_nope"}),
        Attack("a NUL inside the key", headers={"Authorization": f"Bearer vrt_000000000000_a{NUL}b"}),
        Attack("an 8 kB X-API-Key", headers={"X-API-Key": "k" * 8192}),
        Attack("an empty Idempotency-Key", headers={"Idempotency-Key": ""}),
        Attack("junk X-Request-ID", headers={"X-Request-ID": "<script>\x7f" * 50}),
        Attack("Range: garbage", headers={"Range": "bytes=abc"}),
        Attack("Range past the end", headers={"Range": "bytes=999999999-"}),
        Attack("Range: many ranges", headers={"Range": "bytes=" + ",".join(f"{i}-{i}" for i in range(500))}),
        Attack("Accept: XML only", headers={"Accept": "application/xml"}),
        Attack("Content-Length lies", headers={"Content-Length": "999999"}, body=b"{}"),
        Attack("Expect: 100-continue", headers={"Expect": "100-continue"}),
        Attack("200 headers", headers={f"X-H{i}": str(i) for i in range(200)}),
    ]


def query_abuse(op: Operation) -> list[Attack]:
    return [
        Attack("malformed percent escapes", query="limit=%zz&cursor=%&status=%E"),
        Attack("empty names and values", query="=&&=x&limit="),
        Attack("negative and huge numbers", query="limit=-1&max_frames=99999999999999999999999999"),
        Attack("a cursor that is not ours", query="cursor=" + quote("!!!not base64!!!")),
        Attack("a base64 cursor of garbage JSON", query="cursor=WzEsMiwzXQ%3D%3D"),  # [1,2,3]
        Attack("dates that are not dates", query="since=yesterday&until=2026-13-45T99:99"),
        Attack("a path-like version", query="version=../../etc/passwd&method=" + quote("; DROP TABLE jobs")),
        Attack("aggregator abuse", query="aggregator=&aggregator==&aggregator=a=b=c&aggregator=" + "x" * 2000),
        Attack("unicode everywhere", query="status=" + quote("ＱＵＥＵＥＤ") + "&label=" + quote("ＦＡＫＥ")),
        Attack("a token on a route that takes none", query="token=9999999999.abc"),
        *each_query_value(op, "a 10 kB value", "v" * 10_000),
    ]


FAMILIES: dict[str, Callable[[Operation], list[Attack]]] = {
    "nul": nul,
    "surrogate": surrogate,
    "non_finite": non_finite,
    "deep_nesting": deep_nesting,
    "oversize": oversize,
    "content_type": content_type,
    "duplicate_parts": duplicate_parts,
    "header_abuse": header_abuse,
    "query_abuse": query_abuse,
}


@pytest.fixture(scope="module")
def app(services: Services) -> Flask:
    from api.app import create_app
    from core.settings import get_settings

    # No rate limits: the corpus's thousands of requests must reach the handlers (tests/integration/
    # test_api_boundary.py covers the failed-authentication limit).
    return create_app(
        replace(get_settings(), rate_limit_per_min=0, auth_fail_limit_per_min=0, max_upload_bytes=UPLOAD_CAP)
    )


@pytest.fixture(scope="module")
def client(app: Flask) -> FlaskClient:
    return app.test_client()  # not as a context manager: it would keep each request's context (and streams) alive


def _schema_fields(document: dict[str, Any], operation: dict[str, Any], media: str) -> tuple[str, ...] | None:
    content = operation.get("requestBody", {}).get("content", {}).get(media)
    if content is None:
        return None
    schema = content["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return tuple(schema.get("properties", {}))


@pytest.fixture(scope="module")
def operations(client: FlaskClient) -> list[Operation]:
    document = body(client.get("/openapi.json"))
    found = []
    for path, methods in document["paths"].items():
        for method, operation in methods.items():
            params = operation.get("parameters", [])
            found.append(
                Operation(
                    method.upper(),
                    path,
                    tuple(p["name"] for p in params if p["in"] == "path"),
                    tuple(p["name"] for p in params if p["in"] == "query"),
                    _schema_fields(document, operation, "application/json"),
                    _schema_fields(document, operation, "multipart/form-data"),
                )
            )
    assert len(found) >= 25, "every operation of the spec"
    return found


@pytest.fixture(scope="module")
def path_values(client: FlaskClient, keys: Keys) -> dict[str, str]:
    """A real job and batch of the admin's tenant (their videos are in the bucket), so attacks reach past the 404s."""
    job = upload_attack("setup")
    response = client.post("/v1/jobs", data=job.body, content_type=job.content_type, headers=bearer(keys.admin))
    assert response.status_code == 202, response.json
    batch = parts_attack("setup", ("file", "a.mp4", tiny_mp4(1)), ("file", "b.mp4", tiny_mp4(2)))
    made = client.post("/v1/batches", data=batch.body, content_type=batch.content_type, headers=bearer(keys.admin))
    assert made.status_code == 202, made.json
    ids = {"job_id": body(response)["id"], "batch_id": body(made)["id"]}
    others = {"delivery_id": str(uuid.uuid4()), "upload_id": str(uuid.uuid4()), "version": "v-none", "n": "0"}
    return {**ids, **others}


def _url(op: Operation, values: dict[str, str], attack: Attack) -> str:
    url = op.path
    for name in op.path_params:
        url = url.replace(f"{{{name}}}", attack.path_values.get(name, values[name]))
    return url + (f"?{attack.query}" if attack.query else "")


def _problem(status: int, response: Any) -> str | None:
    if status >= 500:
        return f"{status}: {response.get_data()[:300]!r}"
    if status >= 400:
        body = response.get_json(silent=True)
        error = body.get("error") if isinstance(body, dict) else None
        if not (
            isinstance(error, dict)
            and set(body) == {"error"}
            and isinstance(error.get("code"), str)
            and isinstance(error.get("message"), str)
        ):
            return f"{status} without the error shape: {response.content_type} {response.get_data()[:300]!r}"
    return None


@pytest.mark.parametrize("family", list(FAMILIES))
def test_hostile_input_never_gets_a_5xx_and_errors_keep_their_shape(
    family: str, client: FlaskClient, keys: Keys, operations: list[Operation], path_values: dict[str, str]
) -> None:
    failures = []
    sent = 0
    for op in operations:
        for attack in FAMILIES[family](op):
            headers = {**bearer(keys.admin), **attack.headers}
            response = client.open(
                _url(op, path_values, attack),
                method=op.method,
                headers=headers,
                data=attack.body,
                content_type=attack.content_type,
            )
            sent += 1
            if problem := _problem(response.status_code, response):
                failures.append(f"{op} [{attack.label}]: {problem}")
            response.close()
    assert sent >= len(operations)
    assert not failures, f"{len(failures)} of {sent} requests:\n" + "\n".join(failures[:40])
