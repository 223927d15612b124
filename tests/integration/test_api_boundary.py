"""The API's input boundary (issue 12 items 1, 2 and 5), one behaviour per test: NULs (\\u0000), unpaired
surrogates and NaN refused with 400 naming the field; JSON nested deep enough to raise RecursionError refused before
it is parsed; per-route body caps; unknown fields refused; malformed multipart forms named; the upload cap measured
on the file itself, with nothing left in the bucket; 405 with Allow; IDEMPOTENCY_KEY_REUSED; failed
authentication limited per client address."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import replace
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from tests.conftest import Keys, Services, bearer, insert_job
from tests.support.http import body
from tests.support.videos import tiny_mp4


@pytest.fixture(scope="module")
def finished_job(services: Services) -> str:
    return str(insert_job("acme", "SUCCEEDED"))


def error(response: TestResponse) -> tuple[int, str, str]:
    shape = body(response)
    assert set(shape) == {"error"}, shape
    return response.status_code, shape["error"]["code"], shape["error"]["message"]


def feedback(
    client: FlaskClient, keys: Keys, job_id: str, raw: str | bytes, content_type: str = "application/json"
) -> TestResponse:
    return client.post(
        f"/v1/jobs/{job_id}/feedback", data=raw, content_type=content_type, headers=bearer(keys.moderator)
    )


def submit(
    client: FlaskClient, key: str, video: bytes, headers: dict[str, str] | None = None, **fields: Any
) -> TestResponse:
    data = {"file": (io.BytesIO(video), "clip.mp4"), **fields}
    return client.post(
        "/v1/jobs", data=data, content_type="multipart/form-data", headers={**bearer(key), **(headers or {})}
    )


def bucket_keys() -> set[str]:
    from core.storage import get_store

    listed = get_store().client.list_objects_v2(Bucket="verity-test")  # type: ignore[attr-defined]
    return {o["Key"] for o in listed.get("Contents", [])}


# --- item 1: text and JSON ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "where", "problem"),
    [
        ('{"label": "FAKE", "note": "a\\u0000b"}', "note", "NUL character (\\u0000)"),
        ('{"label": "FAKE", "note": "a\\ud800b"}', "note", "unpaired surrogate"),
        ('{"label": "FAKE", "note": "\\udc00"}', "note", "unpaired surrogate"),
        ('{"label": "FAKE", "note\\u0000": "x"}', "a key in the object", "NUL character"),
        ('{"label": NaN}', "label", "not a finite number"),
        ('{"label": "FAKE", "note": -Infinity}', "note", "not a finite number"),
        ('{"label": "FAKE", "x": [1, {"y": 1e999}]}', "x[1].y", "not a finite number"),
    ],
    ids=["nul", "surrogate", "low-surrogate", "nul-in-key", "nan", "-infinity", "overflow-to-infinity"],
)
def test_feedback_text_and_numbers_are_refused_naming_the_field(
    client: FlaskClient, keys: Keys, finished_job: str, raw: str, where: str, problem: str
) -> None:
    status, code, message = error(feedback(client, keys, finished_job, raw))
    assert (status, code) == (400, "INVALID_PARAMETER")
    assert message.startswith(f"{where}: ") and problem in message, message


def test_a_valid_surrogate_pair_is_text_like_any_other(client: FlaskClient, keys: Keys, finished_job: str) -> None:
    response = feedback(client, keys, finished_job, '{"label": "FAKE", "note": "\\ud83d\\ude00 face swap"}')
    assert response.status_code == 201, response.json
    assert body(response)["note"] == "\U0001f600 face swap"


@pytest.mark.parametrize(
    "raw",
    ["[" * 10_000 + "]" * 10_000, '{"a":' * 10_000 + "1" + "}" * 10_000, '{"label": "FAKE", "note": ' + "[" * 5000],
    ids=["arrays", "objects", "unclosed"],
)
def test_json_nested_past_the_recursion_limit_is_refused_before_parsing(
    client: FlaskClient, keys: Keys, finished_job: str, raw: str
) -> None:
    with pytest.raises(RecursionError):  # what Python's json makes of it, and what used to surface as a 500
        json.loads(raw)
    for path, key in ((f"/v1/jobs/{finished_job}/feedback", keys.moderator), ("/v1/calibrations", keys.admin)):
        response = client.post(path, data=raw, content_type="application/json", headers=bearer(key))
        status, code, message = error(response)
        assert (status, code) == (400, "INVALID_JSON") and "nested deeper than 32 levels" in message, message


@pytest.mark.parametrize(
    "raw",
    [
        '{"note": "' + "[{" * 100 + '"}',
        '{"note": "\\\\", "x": "' + "[" * 100 + '"}',  # a string ending in an escaped backslash
        '{"note": "\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\\""}',  # escaped quotes inside a string
        '{"\\u005b": ["' + "]" * 100 + '"]}',
    ],
    ids=["brackets", "escaped-backslash", "escaped-quotes", "closing-brackets"],
)
def test_brackets_inside_strings_are_not_nesting(raw: str) -> None:
    from api.boundary import parse_json

    assert parse_json(raw) == json.loads(raw)


def test_32_levels_of_json_are_fine(client: FlaskClient, keys: Keys) -> None:
    metadata = '{"a": ' * 31 + "[1]" + "}" * 31
    response = submit(client, keys.submitter, tiny_mp4(40), metadata=metadata)
    assert response.status_code == 202, response.json


def test_a_non_json_feedback_body_is_told_so(client: FlaskClient, keys: Keys, finished_job: str) -> None:
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "application/xml"):
        status, code, message = error(feedback(client, keys, finished_job, "label=FAKE", content_type))
        assert (status, code) == (415, "UNSUPPORTED_MEDIA_TYPE") and "must be JSON" in message
    status, code, message = error(feedback(client, keys, finished_job, "label=FAKE"))
    assert (status, code) == (400, "INVALID_JSON") and "label" not in message, message


def test_unknown_fields_are_refused_where_the_schema_is_closed(
    client: FlaskClient, keys: Keys, finished_job: str
) -> None:
    status, code, message = error(feedback(client, keys, finished_job, '{"label": "FAKE", "weight": 9}'))
    assert (status, code) == (400, "INVALID_PARAMETER") and message.startswith("weight: Extra inputs")
    response = client.post("/v1/calibrations", json={"target_fpr": 0.05, "turbo": True}, headers=bearer(keys.admin))
    assert error(response)[:2] == (400, "INVALID_PARAMETER") and "turbo" in error(response)[2]
    status, code, message = error(submit(client, keys.submitter, tiny_mp4(41), colour="blue"))
    assert (status, code) == (400, "INVALID_PARAMETER") and message.startswith("colour: Extra inputs")


def test_a_json_body_over_64_kib_is_413_unread(client: FlaskClient, keys: Keys, finished_job: str) -> None:
    body = '{"label": "FAKE", "note": "' + "x" * 65_536 + '"}'
    assert error(feedback(client, keys, finished_job, body))[:2] == (413, "REQUEST_ENTITY_TOO_LARGE")
    under = '{"label": "FAKE", "note": "' + "x" * 4000 + '"}'  # the note's own limit is 4,000 characters
    assert feedback(client, keys, finished_job, under).status_code == 201


@pytest.mark.parametrize(
    ("field", "raw", "problem"),
    [
        ("metadata", '{"k": "a\\u0000b"}', "k: contains a NUL character"),
        ("metadata", '{"a\\u0000": 1}', "a key in the object: contains a NUL character"),
        ("metadata", '{"k": ["\\ud800"]}', "k[0]: contains an unpaired surrogate"),
        ("metadata", '{"k": NaN}', "k: is not a finite number"),
        ("metadata", "[" * 8000 + "]" * 8000, "nested deeper than 32 levels"),
        ("webhook_url", "https://example.com/\x00", "form field webhook_url: contains a NUL character"),
    ],
    ids=["nul-value", "nul-key", "surrogate", "nan", "deep", "nul-webhook"],
)
def test_upload_fields_go_through_the_same_boundary(
    client: FlaskClient, keys: Keys, field: str, raw: str, problem: str
) -> None:
    before = bucket_keys()
    fields: dict[str, Any] = {field: raw}  # a form field, never the headers parameter
    status, code, message = error(submit(client, keys.submitter, tiny_mp4(42), **fields))
    assert (status, code) == (400, "INVALID_PARAMETER") and problem in message, message
    assert bucket_keys() == before


@pytest.mark.parametrize(
    ("parts", "code", "needle"),
    [
        ([("file", "a.mp4"), ("file", "b.mp4")], "DUPLICATE_FIELD", "2 parts named 'file'"),
        ([("video", "a.mp4")], "UNEXPECTED_FILE", "a file part named 'video'"),
        ([("file", "a.mp4"), ("metadata", None), ("metadata", None)], "DUPLICATE_FIELD", "2 parts named 'metadata'"),
    ],
    ids=["two-file-parts", "file-under-another-name", "two-metadata-fields"],
)
def test_a_malformed_multipart_form_is_400_naming_the_problem(
    client: FlaskClient, keys: Keys, parts: list[tuple[str, str | None]], code: str, needle: str
) -> None:
    from werkzeug.datastructures import MultiDict

    data = MultiDict([(name, (io.BytesIO(tiny_mp4(43)), filename) if filename else "{}") for name, filename in parts])
    response = client.post("/v1/jobs", data=data, content_type="multipart/form-data", headers=bearer(keys.submitter))
    status, got, message = error(response)
    assert (status, got) == (400, code) and needle in message, message


def test_nul_in_the_url_or_a_header_is_refused_before_the_database(client: FlaskClient, keys: Keys) -> None:
    response = client.get("/v1/calibrations/v%00x", headers=bearer(keys.admin))
    assert error(response)[:2] == (400, "INVALID_PARAMETER") and "path parameter version" in error(response)[2]
    response = client.get("/v1/feedback?label=FAKE%00", headers=bearer(keys.moderator))
    assert "query parameter label" in error(response)[2]
    response = client.get("/v1/jobs", headers={"Authorization": "Bearer vrt_000000000000_a\x00b"})
    assert error(response)[:2] == (400, "INVALID_PARAMETER") and "header Authorization" in error(response)[2]


# --- item 2: the upload cap ---------------------------------------------------------------------------------


def test_the_upload_cap_is_measured_on_the_file_and_nothing_is_stored(services: Services, keys: Keys) -> None:
    from api.app import create_app
    from core.settings import get_settings

    capped = create_app(replace(get_settings(), max_upload_bytes=1_000_000)).test_client()
    before = bucket_keys()
    for size in (1_050_000, 1_600_000):  # both were accepted when only the whole request was capped at cap + 1 MiB
        video = tiny_mp4(45) + b"\x00" * (size - len(tiny_mp4(45)))
        status, code, message = error(submit(capped, keys.submitter, video))
        assert (status, code) == (413, "REQUEST_ENTITY_TOO_LARGE") and "1000000" in message, message
    assert bucket_keys() == before, "a refused upload left objects in the bucket"
    at_cap = tiny_mp4(46) + b"\x00" * (1_000_000 - len(tiny_mp4(46)))
    response = submit(capped, keys.submitter, at_cap)
    assert response.status_code == 202 and body(response)["size_bytes"] == 1_000_000


# --- item 5: protocol edges ---------------------------------------------------------------------------------


def test_405_carries_allow(client: FlaskClient, keys: Keys) -> None:
    response = client.put("/v1/jobs", headers=bearer(keys.submitter))
    assert error(response)[:2] == (405, "METHOD_NOT_ALLOWED")
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS", "POST"}


def test_idempotency_key_reused_with_a_different_request_is_422(client: FlaskClient, keys: Keys) -> None:
    key = f"idem-{uuid.uuid4()}"
    first = submit(client, keys.submitter, tiny_mp4(47), {"Idempotency-Key": key}, max_frames="4")
    assert first.status_code == 202, first.json
    same = submit(client, keys.submitter, tiny_mp4(47), {"Idempotency-Key": key}, max_frames="04")
    assert same.status_code == 200 and body(same)["id"] == body(first)["id"]
    assert same.headers["Idempotent-Replayed"] == "true"
    before = bucket_keys()
    for video, fields in ((tiny_mp4(48), {"max_frames": "4"}), (tiny_mp4(47), {"max_frames": "5"}),
                          (tiny_mp4(47), {"max_frames": "4", "metadata": '{"a": 1}'})):  # fmt: skip
        status, code, message = error(submit(client, keys.submitter, video, {"Idempotency-Key": key}, **fields))
        assert (status, code) == (422, "IDEMPOTENCY_KEY_REUSED") and body(first)["id"] in message
    assert bucket_keys() == before


def test_failed_authentication_is_limited_per_address_before_any_lookup(
    services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.auth
    from api.app import create_app
    from core.settings import get_settings
    from db.apikeys import authenticate
    from db.models import ApiKey

    app = create_app(replace(get_settings(), auth_fail_limit_per_min=5, api_key_cache_s=0))
    address = f"198.51.100.{uuid.uuid4().int % 250}"
    attacker = app.test_client()
    attacker.environ_base["REMOTE_ADDR"] = address
    lookups: list[str] = []

    def counted(session: Session, key: str) -> ApiKey | None:
        lookups.append(key)
        return authenticate(session, key)

    monkeypatch.setattr(api.auth, "authenticate", counted)  # the name api.auth looks up per request
    statuses = [attacker.get("/v1/jobs", headers=bearer(f"vrt_{i:012d}_guess")).status_code for i in range(8)]
    assert statuses == [401] * 5 + [429] * 3
    assert len(lookups) == 5, "refused requests must not reach the database"
    limited = attacker.get("/v1/jobs", headers=bearer(keys.submitter))
    assert error(limited)[:2] == (429, "RATE_LIMITED") and 1 <= int(limited.headers["Retry-After"]) <= 60
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = f"203.0.113.{uuid.uuid4().int % 250}"
    assert other.get("/v1/jobs", headers=bearer(keys.submitter)).status_code == 200


@pytest.mark.parametrize("token", ["9999999999.%C3%A9", "%C2%B2.abc", "9999999999.%00"])
def test_a_media_token_with_non_ascii_characters_is_401_not_500(
    client: FlaskClient, finished_job: str, token: str
) -> None:
    # str.isdigit() accepts "²", which int() refuses, and hmac.compare_digest refuses non-ASCII str.
    status, code, _ = error(client.get(f"/v1/jobs/{finished_job}/video?token={token}"))
    assert status in (400, 401) and code in ("UNAUTHENTICATED", "INVALID_PARAMETER")
