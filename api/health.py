"""Liveness and readiness: /readyz checks the database, the broker and the object store."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from sqlalchemy import text

from api.metrics import workers_status
from db.queue import check_broker
from db.session import get_engine
from db.storage import get_store

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


def _check_db() -> None:
    with get_engine().connect() as conn:
        conn.execute(text("SELECT 1"))


@bp.get("/readyz")
def readyz() -> Response:
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
