"""OpenAPI 3.1 generated from the code, served at /openapi.json, with a ReDoc page at /docs.

spectree builds the document from the pydantic models in api/schemas.py, the same models that validate each
request (``@spec.validate``), so the spec cannot drift from what the handlers accept. Mode "strict": a route
without ``@spec.validate`` is missing from the spec, and tests/integration/test_api_openapi.py fails on it.

Decorator order on a route: ``@bp.<method>`` / ``@require_role`` / ``@spec.validate``, so authentication
(401/403) and the rate limit (429) come before request validation (400).

spectree documents every response as JSON; ``responses()`` records the media type of non-JSON ones (PNG,
HTML, text) and the response headers, and ``openapi_document()`` patches them in.
"""

from __future__ import annotations

import copy
import logging
from http import HTTPStatus
from importlib import resources
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import ValidationError
from spectree import Response as SpecResponse
from spectree import SecurityScheme, SpecTree
from spectree.models import InType, SecureType, SecuritySchemeData

from api.errors import ApiError
from api.schemas import ErrorBody

log = logging.getLogger(__name__)

ERROR_TEXT = {
    400: "Invalid parameter, header or body: malformed, unknown fields, JSON nested deeper than 32 levels, or a "
    "NUL character, an unpaired surrogate or a non-finite number (NaN, Infinity) anywhere in it.",
    401: "No API key, or an invalid or revoked one.",
    403: "The key's role may not do this.",
    404: "No such object. Another tenant's objects are reported as missing too.",
    409: "The object's state does not allow this (e.g. the result is not ready).",
    413: "The body is over the route's cap, refused while streaming: 64 KiB for a JSON body; for an upload, the "
    "file over VERITY_MAX_UPLOAD_BYTES, a text field over 500 kB or more than 16 parts.",
    415: "UNSUPPORTED_MEDIA_TYPE: the body's type is not accepted: a JSON route's body is not application/json; an "
    "upload is not multipart/form-data, not an accepted format (MP4/MOV, WebM/Matroska, AVI, GIF, animated PNG/WebP; "
    "JPEG, PNG, WebP or AVIF images) judged by its magic bytes, or its video codec is not in VERITY_ACCEPTED_CODECS "
    "(the message lists the accepted ones).",
    416: "The Range starts past the end of the object.",
    422: "Refused from the container metadata or image header before any decoding: LIMIT_EXCEEDED (resolution, "
    "pixels, duration or frame count), CORRUPT_MEDIA, NO_VIDEO_STREAM; IDEMPOTENCY_KEY_REUSED (the key "
    "was used with a different file or form fields); or another semantic error.",
    429: "Rate limit for this API key, or for failed authentications from this address, exceeded; retry after "
    "Retry-After seconds.",
    503: "A dependency (database, object store) is unavailable; retry after Retry-After seconds.",
}
# Every authenticated route can answer these.
AUTH_ERRORS = (400, 401, 429, 503)
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}


def _describe(error: ValidationError) -> str:
    def problem(e: Any) -> str:
        # A validator's own ValueError says what is wrong without pydantic's "Value error, " prefix.
        return str(e["ctx"]["error"]) if e["type"] == "value_error" else str(e["msg"])

    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {problem(e)}" for e in error.errors())[:1000]


def _before(req: Any, resp: Any, error: Exception | None, instance: Any, adapter: Any) -> None:
    """Request validation failures become the one error shape (spectree's own would be a bare list)."""
    if error is None:
        return
    if isinstance(error, ValidationError):
        if any(e["loc"] == ("file",) and e["type"] == "missing" for e in error.errors()):
            raise ApiError(400, "MISSING_FILE", "send the video as a multipart form field named 'file'")
        raise ApiError(400, "INVALID_PARAMETER", _describe(error))
    raise ApiError(400, "INVALID_PARAMETER", str(error)[:1000])


def _after(req: Any, resp: Any, error: Exception | None, instance: Any, adapter: Any) -> None:
    """A response that breaks its documented schema is a bug: log it and answer 500 in the one error shape."""
    if error is not None:
        log.error("response to %s %s does not match its documented schema: %s", req.method, req.path, error)
        raise ApiError(500, "INTERNAL_ERROR", "an internal error occurred")


spec = SpecTree(
    "flask",
    mode="strict",
    annotations=False,
    title="Verity API",
    version="1",
    description=(
        "Deepfake detection: upload a video, get a calibrated REAL / FAKE / UNCERTAIN verdict.\n\n"
        "Authenticate with `Authorization: Bearer <key>` (or `X-API-Key`). Every error has one shape: "
        '`{"error": {"code": "...", "message": "..."}}`. Requests are rate-limited per API key (429 with '
        "`Retry-After`)."
    ),
    security_schemes=[
        SecurityScheme(
            name="bearer", data=SecuritySchemeData(type=SecureType.HTTP, scheme="bearer", description="An API key.")
        ),
        SecurityScheme(
            name="apiKey", data=SecuritySchemeData(type=SecureType.API_KEY, name="X-API-Key", field_in=InType.HEADER)
        ),
    ],
    security=[{"bearer": []}, {"apiKey": []}],
    before=_before,
    after=_after,
    validation_error_status=400,
    validation_error_model=ErrorBody,
    # Plain model names (spectree's default appends a module hash); nested models are shared by name.
    naming_strategy=lambda model: model.__name__,
    nested_naming_strategy=lambda _parent, child: child,
)


def responses(
    ok: dict[int, Any],
    *errors: int,
    public: bool = False,
    media: dict[int, str] | None = None,
    headers: dict[int, dict[str, str]] | None = None,
) -> SpecResponse:
    """Documented responses of a route: ``ok`` maps 2xx statuses to a model (None for a non-JSON body, whose
    type goes in ``media``); ``errors`` are the extra error statuses, all in the one error shape."""
    codes: dict[str, Any] = {f"HTTP_{code}": model for code, model in ok.items()}
    for code in sorted({*errors, *(() if public else AUTH_ERRORS)}):
        codes[f"HTTP_{code}"] = (ErrorBody, ERROR_TEXT[code])
    resp = SpecResponse(**codes)
    resp.verity_media = media or {}  # type: ignore[attr-defined]
    resp.verity_headers = headers or {}  # type: ignore[attr-defined]
    return resp


def _patch_operation(operation: dict[str, Any], resp: SpecResponse | None) -> None:
    media: dict[int, str] = getattr(resp, "verity_media", {})
    extra_headers: dict[int, dict[str, str]] = getattr(resp, "verity_headers", {})
    for status, entry in operation["responses"].items():
        code = int(status)
        if code in media:
            entry["content"] = {media[code]: {"schema": {"type": "string"}}}
        documented = {
            name: {"description": text, "schema": {"type": "string"}}
            for name, text in extra_headers.get(code, {}).items()
        }
        if code in (429, 503):
            documented.update(RETRY_AFTER)
        if documented:
            entry["headers"] = documented
    if not operation.get("description"):
        operation.pop("description", None)


# Routes in modules that do not use @spec.validate (api/metrics.py, api/review/), documented here by endpoint
# so the spec lists every route: endpoint -> ({status: media type or None}, error statuses, public). Their
# requests are not validated by spectree.
EXTERNAL_ROUTES: dict[str, tuple[dict[int, str | None], tuple[int, ...], bool]] = {
    "metrics.metrics": ({200: "text/plain"}, (), True),
    "review.queue_page": ({200: "text/html"}, (), True),
    "review.job_page": ({200: "text/html"}, (), True),
    "review.review_queue": ({200: "application/json"}, (403,), False),
    "review.review_job": ({200: "application/json"}, (403, 404), False),
    "review.review_calibration": ({200: "application/json"}, (403,), False),
    "review.timeline": ({200: "image/png"}, (404, 409), False),
    "review.frames": ({200: "image/jpeg"}, (404, 409), False),
    "review.video_url": ({200: "application/json"}, (404,), False),
    "review.video": ({200: "application/octet-stream", 206: "application/octet-stream"}, (404, 416), False),
    # Server-Sent Events: spectree would read the whole endless body to validate it.
    "streams.stream_events": ({200: "text/event-stream"}, (404,), False),
}
_TAGS = {"metrics": "operations", "review": "review", "streams": "streams"}


def _external_operation(endpoint: str, func: Any, parameters: list[Any]) -> dict[str, Any]:
    ok, errors, public = EXTERNAL_ROUTES[endpoint]
    documented: dict[str, Any] = {}
    for code, media in ok.items():
        content = {"type": "object"} if media == "application/json" else {"type": "string"}
        documented[str(code)] = {"description": HTTPStatus(code).phrase}
        if media:
            documented[str(code)]["content"] = {media: {"schema": content}}
    for code in sorted({*errors, *(() if public else AUTH_ERRORS)}):
        documented[str(code)] = {
            "description": ERROR_TEXT[code],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
    summary, _, description = (func.__doc__ or endpoint).strip().partition("\n")
    operation = {
        "summary": summary.strip(),
        "operationId": endpoint.replace(".", "_"),
        "tags": [_TAGS[endpoint.split(".")[0]]],
        "parameters": parameters,
        "responses": documented,
    }
    if description.strip():
        operation["description"] = " ".join(description.split())
    if public:
        operation["security"] = []
    return operation


def openapi_document(app: Flask) -> dict[str, Any]:
    """The spec for ``app``'s routes, built once per app."""
    cached: dict[str, Any] | None = app.extensions.get("verity_openapi")
    if cached is not None:
        return cached
    with app.app_context():
        document: dict[str, Any] = copy.deepcopy(spec.spec)
        for rule in app.url_map.iter_rules():
            func = app.view_functions[rule.endpoint]
            path, parameters = spec.backend.parse_path(rule, None)
            metadata = spec.get_function_metadata(func)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                if metadata is not None:
                    _patch_operation(document["paths"][path][method.lower()], metadata.resp)
                elif rule.endpoint in EXTERNAL_ROUTES:
                    operation = _external_operation(rule.endpoint, func, parameters)
                    document["paths"].setdefault(path, {})[method.lower()] = operation
    document["tags"] = [
        {"name": name}
        for name in sorted({t for p in document["paths"].values() for o in p.values() for t in o.get("tags", [])})
    ]
    app.extensions["verity_openapi"] = document
    return document


bp = Blueprint("openapi", __name__)

_DOCS_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Verity API</title>
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="/docs/redoc.js"></script>
</body>
</html>
"""


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(openapi_document(current_app._get_current_object()))  # type: ignore[attr-defined]


@bp.get("/docs")
def docs() -> Response:
    return Response(_DOCS_PAGE, mimetype="text/html")


@bp.get("/docs/redoc.js")
def redoc_js() -> Response:
    # ReDoc's bundle, vendored by the offapi package: the page works with no route to a CDN.
    script = (resources.files("offapi") / "redoc.js").read_bytes()
    return Response(script, mimetype="text/javascript", headers={"Cache-Control": "public, max-age=86400"})
