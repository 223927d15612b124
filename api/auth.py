"""Bearer API keys with roles; every handler gets the caller's key and tenant through ``g``.

Order per request: authenticate (401; 429 for an address with too many failures), then the per-key rate limit
(429), then the role (403), then the body's shape (api/boundary.py: 400, 413, 415), so the body of a request
without a valid key is never read.

A key that authenticated is remembered by the process for ``VERITY_API_KEY_CACHE_S`` (default 5 s; see
``db.apikeys.KeyCache``), so a client polling a job does not cost a database lookup per request; a revoked key
stops working in every process within that time.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import ParamSpec, TypeVar

from flask import Flask, current_app, g, request

from api import boundary, ratelimit
from api.errors import ApiError
from api.openapi import spec
from core.settings import Settings
from core.vocabulary import Role
from db.apikeys import KeyCache, Principal, authenticate
from db.session import read_scope

P = ParamSpec("P")
R = TypeVar("R")

# Which roles may do what: admins can do everything, moderators can also submit.
ROLE_GRANTS: dict[Role, set[Role]] = {
    Role.SUBMITTER: {Role.SUBMITTER, Role.MODERATOR, Role.ADMIN},
    Role.MODERATOR: {Role.MODERATOR, Role.ADMIN},
    Role.ADMIN: {Role.ADMIN},
}


def _presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.headers.get("X-API-Key")


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["verity_key_cache"] = KeyCache(settings.api_key_cache_s)


def _principal(plaintext: str) -> Principal | None:
    cache: KeyCache = current_app.extensions["verity_key_cache"]
    if (principal := cache.get(plaintext)) is not None:
        return principal
    limiter = ratelimit.limiter()
    address = request.remote_addr or "unknown"
    limiter.refuse_failing_client(address)  # before the lookup: that is the cost being limited
    with read_scope() as session:
        key = authenticate(session, plaintext)
        principal = Principal.of(key) if key is not None else None
    if principal is None:
        limiter.record_auth_failure(address)
    else:
        cache.put(plaintext, principal)
    return principal


def presented_key() -> str | None:
    """The key the request carries in its headers (Authorization: Bearer, or X-API-Key), if any."""
    return _presented_key()


def key_principal(plaintext: str) -> Principal | None:
    """The principal of a key presented other than in a header (a WebSocket's first message): cached, and its
    failures count against the address like a header's."""
    return _principal(plaintext)


def may(principal: Principal, role: Role) -> bool:
    return Role(principal.role) in ROLE_GRANTS[role]


def _body_kind(view: Callable[..., object]) -> boundary.BodyKind:
    validated = spec.get_function_metadata(view)
    if validated is None:
        return None
    return "form" if validated.form else "json" if validated.json else None


def require_role(role: Role) -> Callable[[Callable[P, R]], Callable[P, R]]:
    def decorator(view: Callable[P, R]) -> Callable[P, R]:
        body = _body_kind(view)

        @wraps(view)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            plaintext = _presented_key()
            if not plaintext:
                raise ApiError(401, "UNAUTHENTICATED", "an API key is required (Authorization: Bearer <key>)")
            key = _principal(plaintext)
            if key is None:
                raise ApiError(401, "UNAUTHENTICATED", "the API key is invalid or revoked")
            ratelimit.enforce(key.prefix)  # random per key: unique across databases sharing one Redis
            if Role(key.role) not in ROLE_GRANTS[role]:
                raise ApiError(403, "FORBIDDEN", f"this action needs the {role.value} role")
            boundary.check_body(body)
            g.api_key = key
            return view(*args, **kwargs)

        wrapper.required_role = role  # type: ignore[attr-defined]  # read by the authorisation sweep test
        return wrapper

    return decorator


def current_key() -> Principal:
    key: Principal = g.api_key
    return key
