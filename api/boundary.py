"""The API's hostile-input boundary: every text and JSON value a request carries is checked here before it can
reach the database or a log.

* Text (path and query parameters, headers, multipart fields, JSON strings and keys): a NUL character or an
  unpaired surrogate is refused with 400 naming where it was. Postgres stores neither (not in TEXT, not in
  JSONB), and nothing is silently altered, free text included.
* JSON: the body is capped per route before it is read (``JSON_BODY_MAX_BYTES``; the upload route has the
  upload cap instead), nesting is counted before parsing (Python's decoder recurses once per level, so deep input
  would raise RecursionError), and NaN / Infinity, which Python's json accepts (and 1e999 overflows to), are
  refused.
* Multipart (the upload): each field at most once (a batch's ``file`` parts excepted), a file only as the part
  named ``file``, at most ``MAX_FORM_PARTS`` parts (and Flask's 500 kB per text field, which werkzeug's decoder also
  applies to what it buffers of a file part, so it must stay well above its 64 KiB reads); the file itself is
  measured while it is spooled (api/uploads.py).

Order: the URL and headers are checked before authentication (the presented key is looked up in Postgres);
bodies after the role check (``check_body``, called by api.auth.require_role), so the body of a request without a
valid key is never read.
"""

from __future__ import annotations

import json
import math
import re
from typing import IO, Any, Literal

from flask import Flask, Request, Response, current_app, request
from flask.json.provider import DefaultJSONProvider
from gunicorn.http.errors import NoMoreData, ParseException

from api.errors import ApiError, error_response
from api.uploads import CappedSpool
from core.settings import Settings

JSON_BODY_MAX_BYTES = 64 * 1024
MAX_JSON_DEPTH = 32
MAX_FORM_PARTS = 16
# Room for the multipart envelope and form fields around the video itself.
MULTIPART_OVERHEAD = 1024 * 1024
FILE_FIELD = "file"
# Routes whose body may carry several file parts named FILE_FIELD (one per item), up to VERITY_MAX_BATCH_ITEMS.
MULTI_FILE_ENDPOINTS = frozenset({"batches.create_batch"})

BodyKind = Literal["json", "form"] | None

_SURROGATE = re.compile("[\ud800-\udfff]")
_BRACKET_OR_QUOTE = re.compile(r'[\[\]{}"]')
# The rest of a JSON string after its opening quote; possessive, so an unterminated string costs linear time.
_STRING_TAIL = re.compile(r'[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)


class UnsafeInput(ValueError):
    """A value the API refuses; ``where`` names it (a parameter, a header, a JSON member), empty for a whole body."""

    def __init__(self, problem: str, where: str = "") -> None:
        super().__init__(f"{where}: {problem}" if where else problem)
        self.where = where


def check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise UnsafeInput("contains a NUL character (\\u0000)", where)
    if _SURROGATE.search(value):
        raise UnsafeInput("contains an unpaired surrogate", where)


def _check_depth(text: str) -> None:
    depth = pos = 0
    while found := _BRACKET_OR_QUOTE.search(text, pos):
        pos = found.end()
        char = found.group()
        if char == '"':
            tail = _STRING_TAIL.match(text, pos)
            if tail is None:
                return  # an unterminated string: the parser refuses it, and nothing after it can nest
            pos = tail.end()
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise UnsafeInput(f"is nested deeper than {MAX_JSON_DEPTH} levels")
        else:
            depth -= 1


def _check_member(value: Any, where: str) -> None:
    """Recursive, but only over a document whose depth _check_depth bounded."""
    if isinstance(value, str):
        check_text(value, where)
    elif isinstance(value, float) and not math.isfinite(value):
        raise UnsafeInput("is not a finite number (NaN and Infinity are not JSON)", where)
    elif isinstance(value, dict):
        for key, item in value.items():
            check_text(key, f"a key in {where or 'the object'}")
            _check_member(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_member(item, f"{where}[{index}]")


def parse_json(raw: str | bytes) -> Any:
    """JSON text from a client, refused with UnsafeInput (a ValueError) when it is not UTF-8, not JSON, nested
    deeper than MAX_JSON_DEPTH, or holds a NUL, an unpaired surrogate or a non-finite number."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw  # RFC 8259: JSON between systems is UTF-8
    _check_depth(text)
    value = json.loads(text)
    _check_member(value, "")
    return value


class BoundaryJSONProvider(DefaultJSONProvider):
    """Flask reads every request's JSON body with ``app.json.loads``: the boundary's parser (Flask's test client
    reads responses with it too). It takes none of json.loads's options: the boundary alone decides how client
    JSON is read."""

    def loads(self, s: str | bytes) -> Any:  # type: ignore[override]
        return parse_json(s)


class ApiRequest(Request):
    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if e is None:  # werkzeug's call for a body that is not declared as JSON
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", "the body must be JSON (Content-Type: application/json)")
        if isinstance(e, UnsafeInput) and e.where:
            raise ApiError(400, "INVALID_PARAMETER", str(e)[:1000])
        raise ApiError(400, "INVALID_JSON", f"body: {e}"[:1000])

    def _get_file_stream(
        self,
        total_content_length: int | None,
        content_type: str | None,
        filename: str | None = None,
        content_length: int | None = None,
    ) -> IO[bytes]:
        settings: Settings = current_app.config["VERITY_SETTINGS"]
        return CappedSpool(settings.max_upload_bytes)  # type: ignore[return-value]  # an IO[bytes] by delegation


def _check_url_and_headers() -> None:
    for name, value in (request.view_args or {}).items():
        check_text(str(value), f"path parameter {name}")
    for name, value in request.args.items(multi=True):
        check_text(name, "a query parameter name")
        check_text(value, f"query parameter {name}")
    for name, value in request.headers.items():
        check_text(name, "a header name")
        check_text(value, f"header {name}")


def _check_multipart() -> None:
    settings: Settings = current_app.config["VERITY_SETTINGS"]
    request.max_content_length = settings.max_upload_bytes + MULTIPART_OVERHEAD
    has_body = bool(request.content_length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if request.mimetype != "multipart/form-data":
        if has_body:
            expected = f"send multipart/form-data with the video as the part named {FILE_FIELD!r}"
            raise ApiError(415, "UNSUPPORTED_MEDIA_TYPE", expected)
        return
    multi_file = request.endpoint in MULTI_FILE_ENDPOINTS
    if multi_file:  # room for one more file than allowed, so the route can say how many is too many
        request.max_form_parts = MAX_FORM_PARTS + settings.max_batch_items + 1
    files, form = request.files, request.form  # parsed here: over-cap parts are refused with 413 while streaming
    for name in {*files.keys(), *form.keys()}:
        count = len(files.getlist(name)) + len(form.getlist(name))
        if count > 1 and not (multi_file and name == FILE_FIELD and name not in form):
            raise ApiError(400, "DUPLICATE_FIELD", f"{count} parts named {name!r}; send each field once")
    for name in files:
        if name != FILE_FIELD:
            raise ApiError(
                400, "UNEXPECTED_FILE", f"a file part named {name!r}; send the video as the part named {FILE_FIELD!r}"
            )
    for name, value in form.items(multi=True):
        check_text(name, "a form field name")
        check_text(value, f"form field {name}")


def check_body(kind: BodyKind) -> None:
    """The route's body, once the caller is authenticated and allowed, before request validation reads it."""
    if kind == "form":
        _check_multipart()
    elif kind == "json" and request.get_data(cache=True):  # at most the app's MAX_CONTENT_LENGTH (413 beyond)
        request.get_json()  # refused with the reason, and cached for the validator's own read


def init_app(app: Flask) -> None:
    app.request_class = ApiRequest
    app.json = BoundaryJSONProvider(app)
    # Every route's cap unless check_body raises it (the upload route); werkzeug refuses more with 413 unread.
    app.config["MAX_CONTENT_LENGTH"] = JSON_BODY_MAX_BYTES
    app.config["MAX_FORM_PARTS"] = MAX_FORM_PARTS
    app.before_request(_check_url_and_headers)

    @app.errorhandler(UnsafeInput)
    def _refuse(exc: UnsafeInput) -> Response:
        return error_response(400, "INVALID_PARAMETER", str(exc)[:1000])

    # gunicorn's body reader raises these inside a view: a malformed chunked body, or a client that stopped
    # sending before its Content-Length. The client's fault, not a 500.
    @app.errorhandler(ParseException)
    @app.errorhandler(NoMoreData)
    def _unreadable_body(exc: Exception) -> Response:
        return error_response(400, "MALFORMED_BODY", f"the request body could not be read: {exc}"[:1000])
