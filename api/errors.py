"""One JSON error shape for every failure: {"error": {"code": "...", "message": "..."}}."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask, Response, jsonify
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from api.services.errors import (
    BadInput,
    Conflict,
    Invalid,
    NotFound,
    OverLimit,
    ServiceError,
    TooLarge,
    Unavailable,
    Unsupported,
)

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}


_SERVICE_STATUS: dict[type[ServiceError], int] = {
    BadInput: 400,
    NotFound: 404,
    Conflict: 409,
    TooLarge: 413,
    Unsupported: 415,
    Invalid: 422,
    OverLimit: 429,
    Unavailable: 503,
}


@contextmanager
def service_errors(retry_after_s: int = 5) -> Iterator[None]:
    """A service's refusal (api/services/errors.py) as the API's error response; a limit or an outage says when
    to retry."""
    try:
        yield
    except ServiceError as exc:
        status = next(status for kind, status in _SERVICE_STATUS.items() if isinstance(exc, kind))
        headers = {"Retry-After": str(retry_after_s)} if status in (429, 503) else None
        raise ApiError(status, exc.code, exc.message, headers) from exc


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def _code(phrase: str) -> str:
    """A machine-readable code from an HTTP reason phrase: "Method Not Allowed" -> METHOD_NOT_ALLOWED."""
    return phrase.upper().replace(" ", "_")


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        return error_response(exc.status, exc.code, exc.message, exc.headers)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        # werkzeug's own headers carry meaning (Allow on a 405, Content-Range on a 416); its body is HTML.
        headers = {name: value for name, value in exc.get_headers() if name.lower() != "content-type"}
        message = exc.description or exc.name or "error"
        return error_response(exc.code or 500, _code(exc.name or "error"), message, headers)

    @app.after_request
    def _json_errors(response: Response) -> Response:
        """An error a view built by hand (a bare 416 for a Range past the end) gets the one shape too."""
        if response.status_code >= 400 and not response.is_json:
            phrase = response.status.partition(" ")[2] or "error"
            response.set_data(json.dumps({"error": {"code": _code(phrase), "message": phrase}}))
            response.mimetype = "application/json"
        return response

    @app.errorhandler(OperationalError)
    @app.errorhandler(PoolTimeoutError)
    def _db_down(exc: Exception) -> Response:
        log.warning("database unavailable: %s", exc)
        return error_response(
            503, "DATABASE_UNAVAILABLE", "the database is unavailable; retry later", {"Retry-After": "5"}
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        log.exception("unhandled error")
        return error_response(500, "INTERNAL_ERROR", "an internal error occurred")
