"""The live-stream simulator (admin): replay the tenant's labelled stored jobs as streams through Option A, Option B
and today's whole-file scoring, side by side, and optionally fit Option B's thresholds into a calibration version.

Synchronous like a calibration fit: it reads stored frame scores only (no torch, no worker).
"""

from __future__ import annotations

from dataclasses import replace

from flask import Blueprint, Response, current_app, jsonify, request

from api.auth import current_key, require_role
from api.errors import ApiError
from api.openapi import responses, spec
from api.services import simulate as service
from api.simulate_schemas import (
    LatencyView,
    OutcomeView,
    PerFrameFitView,
    PerFrameThresholdsView,
    SimulateFitIn,
    SimulateIn,
    SimulationView,
    StrategyResultView,
    TimelinePointView,
    VideoTimelineView,
)
from core.pack_defaults import pack_defaults
from core.settings import Settings
from core.streams.simulate import (
    WHOLE_FILE,
    Candidate,
    Scoring,
    SimulationReport,
    StrategyReport,
    default_candidates,
    simulate,
)
from core.streams.thresholds import PerFrameThresholds, fit_per_frame_thresholds
from core.vocabulary import Label, Role, StreamStrategyKind
from db import calibrations
from db.calibrations import CalibrationNotFound
from db.session import session_scope

bp = Blueprint("simulate", __name__)


def _candidates(body: SimulateIn) -> list[Candidate]:
    if body.strategies is None:
        return default_candidates(body.fps, body.window)
    out = []
    for s in body.strategies:
        try:
            stream = s.stream(body.fps, body.window)
        except ValueError as exc:
            raise ApiError(400, "INVALID_PARAMETER", f"strategies: {s.name}: {exc}") from exc
        out.append(Candidate(s.name, None, s.fps or body.fps) if stream is None else Candidate.of(s.name, stream))
    return out


def _label_rows(body: SimulateIn) -> list[service.LabelRow] | None:
    if body.labels is None:
        return None
    return [service.LabelRow(Label(r.label), r.job_id, r.filename, r.sha256) for r in body.labels]


def _fit(
    fit: SimulateFitIn, candidates: list[Candidate], data: service.SimulationData
) -> tuple[Candidate, PerFrameThresholds]:
    options = [c for c in candidates if c.stream is not None and c.stream.kind is StreamStrategyKind.PER_FRAME]
    chosen = next((c for c in options if fit.strategy in (None, c.name)), None)
    if chosen is None or chosen.stream is None:
        wanted = f"named {fit.strategy!r} " if fit.strategy else ""
        raise ApiError(400, "INVALID_PARAMETER", f"fit_per_frame needs a per_frame strategy {wanted}to fit")
    try:
        fitted = fit_per_frame_thresholds(data.videos, chosen.stream, data.scoring, fit.target_fpr, fit.uncertain_band)
    except ValueError as exc:
        raise ApiError(422, "CANNOT_FIT", str(exc)) from exc
    return chosen, fitted


def _strategy_view(result: StrategyReport) -> StrategyResultView:
    return StrategyResultView(
        name=result.name,
        kind=WHOLE_FILE if result.strategy is None else result.strategy.kind.value,
        strategy=None if result.strategy is None else dict(result.strategy.to_dict()),
        fps=result.fps,
        t_low=result.t_low,
        t_high=result.t_high,
        videos=result.videos,
        real=result.real,
        fake=result.fake,
        tpr=result.tpr,
        tnr=result.tnr,
        fpr=result.fpr,
        fpr_any_time=result.fpr_any_time,
        uncertain_rate=result.uncertain_rate,
        undecided_rate=result.undecided_rate,
        mean_first_decision_s=result.mean_first_decision_s,
        mean_stable_s=result.mean_stable_s,
        mean_flips=result.mean_flips,
        max_flips=result.max_flips,
        videos_over_flip_limit=result.videos_over_flip_limit,
        latency=LatencyView(
            fps=result.latency.fps,
            frame_budget_ms=result.latency.frame_budget_ms,
            per_frame_ms=result.latency.per_frame_ms,
            limit_ms=result.latency.limit_ms,
            warnings=list(result.latency.warnings),
        ),
    )


def _timelines(report: SimulationReport, count: int) -> list[VideoTimelineView]:
    views = []
    for i in range(min(count, report.videos)):
        outcomes = [(s.name, s.outcomes[i]) for s in report.strategies]
        first = outcomes[0][1]
        views.append(
            VideoTimelineView(
                video_id=first.video_id,
                name=first.name,
                label=Label.FAKE if first.label else Label.REAL,
                outcomes=[
                    OutcomeView(
                        strategy=name,
                        final=o.final,
                        first_decision_s=o.first_decision_s,
                        stable_s=o.stable_s,
                        flips=o.flips,
                        points=[TimelinePointView(t=p.t, score=p.score, verdict=p.verdict) for p in o.timeline],
                    )
                    for name, o in outcomes
                ],
            )
        )
    return views


@bp.post("/v1/admin/simulate")
@require_role(Role.ADMIN)
@spec.validate(json=SimulateIn, resp=responses({200: SimulationView}, 403, 404, 409, 413, 415, 422), tags=["streams"])
def simulate_streams() -> Response:
    """Replay labelled stored jobs as live streams and compare the decision strategies. Role: admin.

    Option A (window), Option B (per-frame fusion, mean or EMA) and the whole file, at a frame rate: TPR, TNR, FPR,
    uncertain rate, time to a first and to a stable decision, flips per video, latency budget, and the decision
    timelines of a few videos. fit_per_frame fits Option B thresholds for a target FPR on the same videos (and,
    with save, stores them in the calibration version). 404: no such calibration version; 409: save without a
    version; 422: no labelled jobs with stored frame scores, or too few to fit.
    """
    given: SimulateIn | None = request.context.json  # type: ignore[attr-defined]
    body = given or SimulateIn.model_validate({})  # no body: every default
    settings: Settings = current_app.config["VERITY_SETTINGS"]
    pack = pack_defaults(settings.pack_manifest)
    candidates = _candidates(body)
    key = current_key()
    try:
        with session_scope() as session:
            data = service.load(
                session,
                key.tenant,
                settings.pack_manifest,
                pack,
                _label_rows(body),
                body.calibration_version,
                body.max_videos,
            )
    except CalibrationNotFound as exc:
        raise ApiError(404, "NOT_FOUND", str(exc)) from exc
    if not data.videos:
        raise ApiError(
            422,
            "NO_LABELLED_JOBS",
            f"no {'labelled' if data.label_source == service.FEEDBACK else 'listed'} jobs of this tenant have stored "
            "frame scores: label finished jobs (POST /v1/jobs/<id>/feedback) or send labels",
        )

    scoring: Scoring = data.scoring
    fit_view = None
    if body.fit_per_frame is not None:
        chosen, fitted = _fit(body.fit_per_frame, candidates, data)
        saved_to = None
        if body.fit_per_frame.save:
            if data.calibration_version is None:
                raise ApiError(409, "NO_CALIBRATION_VERSION", "save needs a calibration version to store them in")
            by = f"api key {key.prefix} ({key.name}): simulator, {len(data.videos)} videos of tenant {key.tenant}"
            calibrations.save_per_frame_thresholds(calibrations.sql_store, data.calibration_version, fitted, by=by)
            saved_to = data.calibration_version
        thresholds = {**scoring.per_frame_thresholds, fitted.averaging.value: (fitted.t_low, fitted.t_high)}
        scoring = replace(scoring, per_frame_thresholds=thresholds)
        fit_view = PerFrameFitView(
            strategy=chosen.name,
            thresholds=PerFrameThresholdsView.model_validate(fitted.to_dict()),
            saved_to=saved_to,
            in_sample=True,
        )

    per_frame_ms = body.per_frame_ms if body.per_frame_ms is not None else data.per_frame_ms
    report = simulate(data.videos, candidates, scoring, per_frame_ms)
    view = SimulationView(
        videos=report.videos,
        real=report.real,
        fake=report.fake,
        flip_limit=report.flip_limit,
        label_source="feedback" if data.label_source == service.FEEDBACK else "labels",
        calibration_version=data.calibration_version,
        without_frame_scores=data.without_frame_scores,
        unmatched_labels=data.unmatched_labels,
        strategies=[_strategy_view(s) for s in report.strategies],
        timelines=_timelines(report, body.timelines),
        fit=fit_view,
    )
    return jsonify(view.model_dump(mode="json"))
