"""Calibration versions (admin): fit from feedback, list, show, activate / roll back, reliability diagram,
and replay of a stored job under any version.

The routes call the service functions of ``db.calibrations`` (database + the pure numpy of ``core.scoring``, no
torch). A fit is synchronous: it reads stored scores only and takes seconds for tens of thousands of labels.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, current_app, jsonify, request

from api.auth import current_key, require_role
from api.errors import ApiError
from api.jobs import _tenant_job
from api.openapi import responses, spec
from api.schemas import CalibrationFitIn, CalibrationList, CalibrationView, ReplayQuery, ReplayView
from core.pack_defaults import PackDefaults, pack_defaults
from core.plots import reliability_png
from core.scoring.recalibration_config import KNOBS
from core.scoring.recalibration_types import NotEnoughLabels
from core.scoring.replay import ReplayError
from core.settings import Settings
from core.vocabulary import FUSION_METHODS, Role
from db import calibrations
from db.calibrations import CalibrationNotFound
from db.session import session_scope

bp = Blueprint("calibrations", __name__)

# Body field -> (RecalibrationConfig field, type), from the one declaration of the knobs.
_FIT_OPTIONS: dict[str, tuple[str, type]] = {knob.option: (name, knob.kind) for name, knob in KNOBS}


def _settings() -> Settings:
    settings: Settings = current_app.config["VERITY_SETTINGS"]
    return settings


def _pack() -> PackDefaults:
    return pack_defaults(_settings().pack_manifest)


def _body() -> dict[str, Any]:
    if not request.get_data():
        return {}
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise ApiError(400, "INVALID_JSON", "send a JSON object body (or none)")
    return body


def _not_found(exc: CalibrationNotFound) -> ApiError:
    return ApiError(404, "NOT_FOUND", str(exc))


@bp.post("/v1/calibrations")
@require_role(Role.ADMIN)
@spec.validate(
    json=CalibrationFitIn,
    resp=responses({201: CalibrationView}, 403, 413, 415, 422, headers={201: {"Location": "The new version's URL."}}),
    tags=["calibrations"],
)
def fit_calibration() -> Response:
    """Fit a candidate now. Body (all optional): target_fpr, uncertain_band, held_out_fraction,
    min_per_class, min_isotonic_labels, method, seed, auto_activate."""
    body = _body()
    unknown = sorted(set(body) - set(_FIT_OPTIONS) - {"auto_activate"})
    if unknown:
        raise ApiError(400, "INVALID_PARAMETER", f"unknown field(s) {unknown}; allowed: {sorted(_FIT_OPTIONS)}")
    overrides: dict[str, Any] = {}
    for field, (name, kind) in _FIT_OPTIONS.items():
        if field not in body or body[field] is None:
            continue
        value = body[field]
        ok = isinstance(value, str) if kind is str else isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or (kind is int and value != int(value)):
            raise ApiError(
                400, "INVALID_PARAMETER", f"{field} must be a{'n integer' if kind is int else ' ' + kind.__name__}"
            )
        overrides[name] = kind(value)
    if "fusion_method" in overrides and overrides["fusion_method"] not in FUSION_METHODS:
        raise ApiError(400, "INVALID_PARAMETER", f"method must be one of {', '.join(FUSION_METHODS)}")
    auto = body.get("auto_activate", False)
    if not isinstance(auto, bool):
        raise ApiError(400, "INVALID_PARAMETER", "auto_activate must be true or false")
    try:
        config = _settings().recalibration.with_overrides(**overrides)
    except ValueError as exc:
        raise ApiError(400, "INVALID_PARAMETER", str(exc)) from exc
    try:
        view = calibrations.fit(calibrations.sql_store, _pack(), config, auto_activate=auto)
    except NotEnoughLabels as exc:
        raise ApiError(422, "NOT_ENOUGH_LABELS", str(exc)) from exc
    response = jsonify(view)
    response.status_code = 201
    response.headers["Location"] = f"/v1/calibrations/{view['version']}"
    return response


@bp.get("/v1/calibrations")
@require_role(Role.ADMIN)
@spec.validate(resp=responses({200: CalibrationList}, 403), tags=["calibrations"])
def list_calibrations() -> Response:
    """Every calibration version, newest first, and the active one. Role: admin."""
    versions = calibrations.list_versions(calibrations.sql_store)
    active = next((v["version"] for v in versions if v["status"] == "active"), None)
    return jsonify({"active": active, "calibrations": versions})


@bp.get("/v1/calibrations/<version>")
@require_role(Role.ADMIN)
@spec.validate(resp=responses({200: CalibrationView}, 403, 404), tags=["calibrations"])
def show_calibration(version: str) -> Response:
    """One version in full (calibrator knots, stacker, reliability bins). Role: admin."""
    try:
        return jsonify(calibrations.get_version(calibrations.sql_store, version, full=True))
    except CalibrationNotFound as exc:
        raise _not_found(exc) from exc


@bp.post("/v1/calibrations/<version>/activate")
@require_role(Role.ADMIN)
@spec.validate(resp=responses({200: CalibrationView}, 403, 404), tags=["calibrations"])
def activate_calibration(version: str) -> Response:
    """Make a version active (also how to roll back to an earlier one). Role: admin."""
    key = current_key()
    try:
        by = f"api key {key.prefix} ({key.name})"
        return jsonify(calibrations.activate(calibrations.sql_store, version, by=by))
    except CalibrationNotFound as exc:
        raise _not_found(exc) from exc


@bp.get("/v1/calibrations/<version>/reliability.png")
@require_role(Role.ADMIN)
@spec.validate(resp=responses({200: None}, 403, 404, media={200: "image/png"}), tags=["calibrations"])
def reliability_diagram(version: str) -> Response:
    """Reliability diagram of the version's held-out predictions, before and after calibration. Role: admin."""
    try:
        metrics = calibrations.get_version(calibrations.sql_store, version, full=True)["metrics"]
    except CalibrationNotFound as exc:
        raise _not_found(exc) from exc
    png = reliability_png(version, metrics)
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=60"})


@bp.get("/v1/jobs/<job_id>/replay")
@require_role(Role.ADMIN)
@spec.validate(query=ReplayQuery, resp=responses({200: ReplayView}, 403, 404, 409), tags=["calibrations"])
def replay_job(job_id: str) -> Response:
    """?version=V|none (default: the job's own), &method=, &aggregator=MODEL=SPEC (repeatable)."""
    with session_scope() as session:
        job = _tenant_job(session, job_id)  # another tenant's job is a 404
        tenant = job.tenant
    aggregators: dict[str, str] = {}
    for item in request.args.getlist("aggregator"):
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise ApiError(400, "INVALID_PARAMETER", f"aggregator takes MODEL=SPEC, got {item!r}")
        aggregators[name] = spec
    try:
        with session_scope() as session:
            out = calibrations.replay(
                session,
                _pack(),
                job_id,
                request.args.get("version"),
                request.args.get("method"),
                aggregators,
                tenant=tenant,
            )
    except CalibrationNotFound as exc:
        raise _not_found(exc) from exc
    except ReplayError as exc:
        raise ApiError(409 if "no stored result" in str(exc) else 400, "CANNOT_REPLAY", str(exc)) from exc
    return jsonify(out)
