"""Liveness and readiness: /readyz checks the database, the broker and the object store."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from api.metrics import workers_status
from api.openapi import responses, spec
from api.schemas import Health, Readiness
from core.queue import check_broker
from core.storage import get_store
from db.session import get_engine

bp = Blueprint("health", __name__)


@bp.get("/healthz")
@spec.validate(resp=responses({200: Health}, public=True), security={}, tags=["operations"])
def healthz() -> Response:
    """Liveness: the process answers. No key needed."""
    return jsonify({"status": "ok"})


def _check_db() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


@bp.get("/readyz")
@spec.validate(resp=responses({200: Readiness, 503: Readiness}, public=True), security={}, tags=["operations"])
def readyz() -> Response:
    """Readiness: the database, the broker and the object store answer (503 with the failing check otherwise).
    No key needed."""
    checks: dict[str, str] = {}
    for name, check in (("database", _check_db), ("broker", check_broker), ("storage", get_store().check)):
        try:
            check()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}: {str(exc)[:200]}"
    ready = all(v == "ok" for v in checks.values())
    checks["workers"] = workers_status()  # informational: never fails readiness (see api/metrics.py)
    response = jsonify({"status": "ready" if ready else "unavailable", "checks": checks})
    response.status_code = 200 if ready else 503
    return response
