"""Facts about the API's routes that more than one API test checks against."""

from __future__ import annotations

# The spec's own routes and static files are not API operations.
UNDOCUMENTED_ENDPOINTS = frozenset(
    {"static", "review.static", "openapi.openapi_json", "openapi.docs", "openapi.redoc_js"}
    # A WebSocket upgrade is no OpenAPI operation (POST /v1/streams describes it); tests/integration/test_streams_api
    # checks its authentication and tenant isolation.
    | {"streams.websocket"}
)
