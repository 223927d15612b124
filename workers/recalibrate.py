"""Calibration versions in the database: fit from moderator feedback, list, activate / roll back, replay.

The fit itself is ``core.scoring.recalibration`` (pure numpy): this module gathers the labelled jobs
with the per-model scores their results stored, stores a ``candidate`` row, flips statuses on activation
and hands the worker the active version. Nothing here re-runs a detector or imports torch, so the API
imports this module directly (``workers/__init__.py`` is empty; never import ``workers.pipeline`` or
``models.pack`` from here).

Command: ``python -m workers.recalibrate fit|list|show V|activate V|replay JOB_ID [--version V]|png V``.

Calibration versions are deployment-wide (the ``calibrations`` table has no tenant), so a fit uses the
current REAL/FAKE labels of every tenant.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import math
import os
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.scoring.metrics import ReliabilityBin
from core.scoring.override import KNOWN_CONTENT
from core.scoring.recalibration import (
    LabelledJob,
    NotEnoughLabels,
    Recalibration,
    RecalibrationConfig,
    Setup,
    VersionSpec,
    recalibrate,
)
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.settings import Settings, get_settings
from core.vocabulary import FUSION_METHODS, TaskName
from db.models import Calibration, FrameScore, Job, Result, utcnow
from db.session import session_scope

log = logging.getLogger(__name__)

__all__ = [
    "ActiveCalibration",
    "CalibrationNotFound",
    "NotEnoughLabels",
    "ReplayError",
    "activate",
    "active",
    "active_calibration",
    "config_from_env",
    "fit",
    "get_version",
    "list_versions",
    "recalibrate_schedule",
    "reliability_png",
    "replay",
]

CANDIDATE, ACTIVE, RETIRED = "candidate", "active", "retired"
ACTIVE_CACHE_S = 5.0  # the worker re-reads the active version at most this often
_ACTIVATION_LOCK = 0x56455249  # pg_advisory_xact_lock key ("VERI"): one activation at a time
_DEFAULT_FUSION = FusionSpec("weighted_average", 0.5, 0.5, 1)


class CalibrationNotFound(LookupError):
    def __init__(self, version: str) -> None:
        self.version = version
        super().__init__(f"no calibration version {version!r}")


class ReplayError(ValueError):
    """A job that cannot be replayed (no result, no scores, an unknown option); the message says why."""


# --- the pack and the active version --------------------------------------------------------------


def pack_defaults(settings: Settings | None = None) -> tuple[FusionSpec, dict[str, float]]:
    """The pack's fusion spec and base member weights, read from its manifest (pure YAML, no torch)."""
    from core.manifest import ManifestError, read_manifest

    settings = settings or get_settings()
    try:
        manifest = read_manifest(settings.pack_manifest)
    except ManifestError as exc:
        log.warning("using default fusion settings: %s", exc)
        return _DEFAULT_FUSION, {}
    f = manifest.fusion
    return FusionSpec(f.method, f.t_low, f.t_high, f.min_models, dict(f.params)), {
        m.name: m.weight for m in manifest.members
    }


def _spec(row: Calibration) -> VersionSpec:
    return VersionSpec.from_row(row.version, row.calibrators, row.feedback_weights, row.fusion, row.thresholds)


def _row(session: Session, version: str) -> Calibration:
    row = session.scalar(select(Calibration).where(Calibration.version == version))
    if row is None:
        raise CalibrationNotFound(version)
    return row


def _active_row(session: Session) -> Calibration | None:
    return session.scalar(
        select(Calibration).where(Calibration.status == ACTIVE).order_by(Calibration.activated_at.desc()).limit(1)
    )


@dataclass(frozen=True)
class ActiveCalibration:
    """The active version as the worker uses it: ``state`` for ``run_pipeline(calibration=...)`` and
    ``fusion_spec(pack_fusion)`` for the method, thresholds and stacker this version fitted."""

    version: str
    spec: VersionSpec

    @property
    def state(self) -> CalibrationState:
        return self.spec.state

    def fusion_spec(self, default: FusionSpec) -> FusionSpec:
        return self.spec.fusion_spec(default)


_cache_lock = threading.Lock()
_cache: tuple[float, ActiveCalibration | None] | None = None


def clear_cache() -> None:
    global _cache
    with _cache_lock:
        _cache = None


def active(max_age_s: float = ACTIVE_CACHE_S) -> ActiveCalibration | None:
    """The active version (None: identity calibration and the pack's fusion), cached for ``max_age_s``."""
    global _cache
    now = time.monotonic()
    with _cache_lock:
        if _cache is not None and now - _cache[0] < max_age_s:
            return _cache[1]
    with session_scope() as session:
        row = _active_row(session)
        value = None if row is None else ActiveCalibration(row.version, _spec(row))
    with _cache_lock:
        _cache = (now, value)
    return value


def active_calibration() -> CalibrationState | None:
    """The worker's call: the active version's CalibrationState, or None when no version is active."""
    current = active()
    return None if current is None else current.state


# --- gathering labels -----------------------------------------------------------------------------


def _majority(labels: Sequence[str]) -> str | None:
    counts = Counter(labels)
    if counts["REAL"] == counts["FAKE"]:
        return None
    return "FAKE" if counts["FAKE"] > counts["REAL"] else "REAL"


def _working_scores(per_model: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, entry in (per_model or {}).items():
        if not isinstance(entry, Mapping) or entry.get("error"):
            continue
        value = entry.get("aggregated")
        if isinstance(value, int | float) and math.isfinite(value):
            out[name] = float(value)
    return out


def _track_scores(tracks: Mapping[str, Any]) -> list[dict[str, float]]:
    out = []
    for track in (tracks or {}).get("tracks", []) or []:
        per_model = track.get("per_model") if isinstance(track, Mapping) else None
        if isinstance(per_model, Mapping):
            scores = {k: float(v) for k, v in per_model.items() if isinstance(v, int | float) and math.isfinite(v)}
            if scores:
                out.append(scores)
    return out


def gather_labelled_jobs(session: Session) -> tuple[list[LabelledJob], dict[str, Any]]:
    """Every job with a current REAL/FAKE label (the majority when moderators disagree; a tie is left out)
    and a stored result with per-model aggregated scores."""
    from db.models import Feedback

    by_job: dict[uuid.UUID, list[str]] = {}
    for job_id, label in session.execute(
        select(Feedback.job_id, Feedback.label).where(
            Feedback.is_current.is_(True), Feedback.label.in_(("REAL", "FAKE"))
        )
    ):
        by_job.setdefault(job_id, []).append(label)
    labels = {job_id: _majority(votes) for job_id, votes in by_job.items()}
    ties = sorted(str(j) for j, label in labels.items() if label is None)
    decided = {j: label for j, label in labels.items() if label is not None}

    jobs: list[LabelledJob] = []
    packs: Counter[str] = Counter()
    ids = sorted(decided, key=str)
    for start in range(0, len(ids), 1000):
        chunk = ids[start : start + 1000]
        rows = session.execute(
            select(Result.job_id, Result.per_model, Result.tracks, Result.model_pack).where(Result.job_id.in_(chunk))
        )
        for job_id, per_model, tracks, model_pack in rows:
            scores = _working_scores(per_model)
            if not scores:
                continue
            packs[model_pack or "unknown"] += 1
            jobs.append(LabelledJob(str(job_id), int(decided[job_id] == "FAKE"), scores, _track_scores(tracks)))
    digest = hashlib.sha256(
        json.dumps(sorted((j.job_id, j.label) for j in jobs), separators=(",", ":")).encode()
    ).hexdigest()
    stats = {
        "labelled_jobs": len(by_job),
        "tied_labels": len(ties),
        "with_scores": len(jobs),
        "model_packs": dict(packs),
        "labels_digest": digest,
    }
    return jobs, stats


def current_setup(session: Session, settings: Settings | None = None) -> Setup:
    """How jobs are scored now: the active version (if any) over the pack's fusion and base weights."""
    pack_fusion, base_weights = pack_defaults(settings)
    row = _active_row(session)
    if row is None:
        return Setup(None, pack_fusion, base_weights)
    spec = _spec(row)
    return Setup(spec.state, spec.fusion_spec(pack_fusion), base_weights)


# --- fit, list, activate --------------------------------------------------------------------------


def config_from_env(**overrides: Any) -> RecalibrationConfig:
    """Defaults, then VERITY_RECAL_* environment variables, then ``overrides`` (None values ignored)."""
    env = {
        "target_fpr": ("VERITY_RECAL_TARGET_FPR", float),
        "uncertain_band": ("VERITY_RECAL_UNCERTAIN_BAND", float),
        "held_out_fraction": ("VERITY_RECAL_HELD_OUT", float),
        "min_per_class": ("VERITY_RECAL_MIN_PER_CLASS", int),
        "min_isotonic_labels": ("VERITY_RECAL_MIN_ISOTONIC", int),
        "fusion_method": ("VERITY_RECAL_METHOD", str),
        "seed": ("VERITY_RECAL_SEED", int),
    }
    values: dict[str, Any] = {}
    for field_name, (var, kind) in env.items():
        raw = os.environ.get(var)
        if raw:
            try:
                values[field_name] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"{var} must be a {kind.__name__}, got {raw!r}") from exc
    values.update({k: v for k, v in overrides.items() if v is not None})
    return RecalibrationConfig(**values)


def _next_version(session: Session) -> str:
    count = session.scalar(select(func.count()).select_from(Calibration)) or 0
    return f"v{count + 1}"


def _store(rec: Recalibration, stats: Mapping[str, Any], before_version: str | None) -> str:
    columns = rec.row_columns()
    columns["fitted_on"] = {**columns["fitted_on"], **stats, "before_version": before_version}
    for attempt in range(5):
        try:
            with session_scope() as session:
                version = f"{_next_version(session)}" if attempt == 0 else f"{_next_version(session)}-{attempt}"
                session.add(Calibration(version=version, status=CANDIDATE, **columns))
            return version
        except IntegrityError:  # another fit took the same number; try the next name
            continue
    raise RuntimeError("could not allocate a calibration version name")


def fit(
    config: RecalibrationConfig | None = None,
    auto_activate: bool = False,
    skip_if_unchanged: bool = False,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Fit a new ``candidate`` from the current feedback and return its view.

    ``auto_activate`` activates it only when its held-out metrics beat the current setup's.
    ``skip_if_unchanged`` (the scheduled task) fits nothing when the labels are those the newest version
    was fitted on, and returns ``{"skipped": ...}``. NotEnoughLabels propagates.
    """
    with session_scope() as session:
        jobs, stats = gather_labelled_jobs(session)
        if skip_if_unchanged:
            newest = session.scalar(select(Calibration).order_by(Calibration.id.desc()).limit(1))
            if newest is not None and newest.fitted_on.get("labels_digest") == stats["labels_digest"]:
                return {"skipped": f"no new labels since {newest.version}", "version": newest.version}
        setup = current_setup(session, settings)
    rec = recalibrate(jobs, setup, config or config_from_env())
    version = _store(rec, stats, None if setup.state is None else setup.state.version)
    log.info("calibration %s fitted on %s labels (better: %s)", version, rec.fitted_on["labels"], rec.better)
    if auto_activate and rec.better:
        return activate(version, by="auto: held-out metrics better than the current setup")
    return get_version(version)


def activate(version: str, by: str = "") -> dict[str, Any]:
    """Make ``version`` the active one; the previously active one becomes ``retired``. Activating an
    earlier version is the rollback. Each activation is appended to the version's audit trail."""
    with session_scope() as session:
        if session.get_bind().dialect.name == "postgresql":
            session.execute(select(func.pg_advisory_xact_lock(_ACTIVATION_LOCK)))
        row = _row(session, version)
        previous = list(
            session.scalars(select(Calibration).where(Calibration.status == ACTIVE, Calibration.id != row.id))
        )
        if row.status != ACTIVE or previous:
            now = utcnow()
            for old in previous:
                old.status = RETIRED
            row.status = ACTIVE
            row.activated_at = now
            entry = {"at": now.isoformat(), "previous": [p.version for p in previous], "by": by}
            row.metrics = {**row.metrics, "activations": [*row.metrics.get("activations", []), entry]}
        session.flush()
        view = calibration_view(row, full=False)
    clear_cache()
    log.info("calibration %s activated (%s)", version, by or "no reason given")
    return view


def calibration_view(row: Calibration, full: bool = False) -> dict[str, Any]:
    """JSON view of a row; the list leaves the isotonic knots out (``full`` keeps them)."""
    calibrators = row.calibrators if full else {name: {"kind": c.get("kind")} for name, c in row.calibrators.items()}
    metrics = dict(row.metrics)
    if not full:
        metrics.pop("reliability", None)
    fusion = dict(row.fusion)
    if not full:
        fusion.pop("stacker", None)
    return {
        "version": row.version,
        "status": row.status,
        "created_at": row.created_at.isoformat() if row.created_at else None,
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "fusion": fusion,
        "thresholds": row.thresholds,
        "feedback_weights": row.feedback_weights,
        "calibrators": calibrators,
        "fitted_on": row.fitted_on,
        "metrics": metrics,
        "links": {"reliability": f"/v1/calibrations/{row.version}/reliability.png"},
    }


def list_versions() -> list[dict[str, Any]]:
    with session_scope() as session:
        rows = session.scalars(select(Calibration).order_by(Calibration.id.desc()))
        return [calibration_view(r) for r in rows]


def get_version(version: str, full: bool = False) -> dict[str, Any]:
    with session_scope() as session:
        return calibration_view(_row(session, version), full=full)


# --- replay ---------------------------------------------------------------------------------------


def _known_label(overrides: Mapping[str, Any]) -> str | None:
    for o in (overrides or {}).get("applied", []) or []:
        if isinstance(o, Mapping) and o.get("kind") == KNOWN_CONTENT:
            return "FAKE" if o.get("after") == 1.0 else "REAL"
    return None


def replay(
    job_id: str,
    version: str | None = None,
    method: str | None = None,
    aggregators: Mapping[str, str] | None = None,
    tenant: str | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Re-score a stored job without the GPU: its frame scores (or, without them, its per-track aggregated
    scores) through ``score_video`` under ``version`` (None: the version its result was made with; "none":
    no calibration and the pack's fusion), optionally another fusion ``method`` or per-model aggregators.
    Under the job's own version and options this reproduces the stored verdict and score exactly."""
    aggregators = dict(aggregators or {})
    if method is not None and method not in FUSION_METHODS:
        raise ReplayError(f"method must be one of {FUSION_METHODS}, got {method!r}")
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError as exc:
        raise ReplayError(f"no such job {job_id!r}") from exc
    pack_fusion, pack_weights = pack_defaults(settings)
    with session_scope() as session:
        query = select(Result).join(Job, Job.id == Result.job_id).where(Result.job_id == job_uuid)
        if tenant is not None:
            query = query.where(Job.tenant == tenant)
        result = session.scalar(query)
        if result is None:
            raise ReplayError(f"job {job_id} has no stored result")
        frames = session.execute(
            select(FrameScore.model, FrameScore.track_id, FrameScore.score)
            .where(FrameScore.job_id == job_uuid)
            .order_by(FrameScore.track_id, FrameScore.frame_index, FrameScore.id)
        ).all()
        own = None if result.calibration_version is None else _spec(_row(session, result.calibration_version))
        if version is None or version == result.calibration_version:
            target, target_name = own, result.calibration_version
        elif version == "none":
            target, target_name = None, None
        else:
            target, target_name = _spec(_row(session, version)), version
        stored: dict[str, Any] = {
            "verdict": result.verdict,
            "score": result.score,
            "raw_score": result.raw_score,
            "method": result.method,
            "t_low": result.t_low,
            "t_high": result.t_high,
            "calibration_version": result.calibration_version,
        }
        per_model: dict[str, Any] = dict(result.per_model or {})
        tracks = _track_scores_by_id(result.tracks)
        known = _known_label(result.overrides)

    base: dict[str, Any] = {"job_id": str(job_uuid), "version": target_name, "stored": stored}
    if not per_model:
        return {**base, "replayed": None, "reason": f"the stored result ({result.verdict}) has no model scores"}

    own_weights = {} if own is None else own.state.feedback_weights
    same_version = target_name == result.calibration_version
    members: list[MemberSpec] = []
    failed: dict[str, str] = {}
    # Members in the pack's order, as the pipeline passed them: Noisy-OR's product rounds differently in
    # another order, and JSONB does not keep key order. Models the pack no longer has go last, by name.
    rank = {name: i for i, name in enumerate(pack_weights)}
    for name in sorted(per_model, key=lambda n: (rank.get(n, len(rank)), n)):
        entry = per_model[name]
        stored_weight = float(entry.get("weight", 1.0))
        # The stored weight is base × the job's own feedback multiplier; under another version the base is
        # recovered and that version's multiplier applied (score_video multiplies by the state's weights).
        weight = stored_weight if same_version else stored_weight / own_weights.get(name, 1.0)
        try:
            members.append(MemberSpec(name, aggregators.pop(name, entry.get("aggregator") or "mean"), weight))
        except ValueError as exc:  # a bad aggregator spec
            raise ReplayError(str(exc)) from exc
        if entry.get("error") or entry.get("aggregated") is None:
            failed[name] = str(entry.get("error") or "no score stored")
    if aggregators:
        raise ReplayError(f"aggregators given for models the job did not run: {sorted(aggregators)}")

    working = [m.name for m in members if m.name not in failed]
    track_scores: dict[str, dict[int, list[float]]] = {name: {} for name in working}
    source = "frame_scores"
    for model, track_id, score in frames:
        if model in track_scores:
            track_scores[model].setdefault(int(track_id), []).append(float(score))
    if not any(track_scores.values()):
        if any(m.aggregator != per_model[m.name].get("aggregator") for m in members):
            raise ReplayError("the job has no stored frame scores, so other aggregators cannot be replayed")
        source = "stored_aggregates"
        members = [replace(m, aggregator="mean") for m in members]
        by_track = tracks or {0: {n: float(per_model[n]["aggregated"]) for n in working}}
        track_scores = {n: {tid: [s[n]] for tid, s in by_track.items() if n in s} for n in working}

    if same_version:
        # Effective weights are already in the members; the state must not multiply them again.
        state = None if own is None else replace(own.state, feedback_weights={})
        if method is None or method == stored["method"]:
            params = _stacker_params(own, pack_fusion) if stored["method"] == "stacker" else {}
            fusion = FusionSpec(str(stored["method"]), float(stored["t_low"]), float(stored["t_high"]), 1, params)
        else:
            fusion = _other_method(own, pack_fusion, method)
    else:
        state = None if target is None else target.state
        fusion = _other_method(target, pack_fusion, method)
    try:
        scored = score_video(track_scores, members, fusion, state, failed, known).to_dict()
    except ValueError as exc:  # NotEnoughModels included
        raise ReplayError(f"cannot replay job {job_id}: {exc}") from exc
    scored["calibration_version"] = target_name
    return {
        **base,
        "source": source,
        "method": fusion.method,
        "replayed": scored,
        "same_verdict": scored["verdict"] == stored["verdict"],
        "same_score": scored["score"] == stored["score"],
    }


def _stacker_params(spec: VersionSpec | None, pack_fusion: FusionSpec) -> dict[str, Any]:
    if spec is not None and spec.method == "stacker":
        return dict(spec.params)
    if spec is not None and spec.stacker is not None:
        return dict(spec.stacker)
    return dict(pack_fusion.params)


def _other_method(spec: VersionSpec | None, pack_fusion: FusionSpec, method: str | None) -> FusionSpec:
    if spec is not None:
        try:
            return spec.fusion_spec(pack_fusion, method)
        except ValueError as exc:
            raise ReplayError(str(exc)) from exc
    if method is None or method == pack_fusion.method:
        return pack_fusion
    if method == "stacker" and not pack_fusion.params:
        raise ReplayError("no stacker is fitted without a calibration version")
    return FusionSpec(method, pack_fusion.t_low, pack_fusion.t_high, pack_fusion.min_models, pack_fusion.params)


def _track_scores_by_id(tracks: Mapping[str, Any]) -> dict[int, dict[str, float]]:
    out: dict[int, dict[str, float]] = {}
    for i, track in enumerate((tracks or {}).get("tracks", []) or []):
        if isinstance(track, Mapping) and isinstance(track.get("per_model"), Mapping):
            out[int(track.get("track_id", i))] = {k: float(v) for k, v in track["per_model"].items()}
    return out


# --- the picture ----------------------------------------------------------------------------------


def reliability_png(version: str) -> bytes:
    """Reliability diagram of the held-out videos, before (the setup it was fitted against) and after."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with session_scope() as session:
        row = _row(session, version)
        metrics = dict(row.metrics)
    reliability = metrics.get("reliability") or {}
    held = metrics.get("held_out") or {}
    fig = Figure(figsize=(6.4, 6.4), dpi=100)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    width = 1.0
    for key, colour, name in (("before", "tab:red", "before"), ("after", "tab:blue", f"after ({version})")):
        bins = [ReliabilityBin.from_dict(b) for b in reliability.get(key) or []]
        full = [b for b in bins if b.count]
        if not full:
            continue
        summary = held.get(key) or {}
        if key == "before" and held.get("before_version"):
            name = f"before ({held['before_version']})"
        elif key == "before":
            name = "before (uncalibrated)"
        if "ece" in summary:
            name += f", ECE {summary['ece']:.3f}"
        top.plot(
            [b.mean_predicted for b in full], [b.fraction_fake for b in full], marker="o", color=colour, label=name
        )
        width = bins[0].hi - bins[0].lo
        offset = -width / 4 if key == "before" else width / 4
        bottom.bar([(b.lo + b.hi) / 2 + offset for b in bins], [b.count for b in bins], width=width / 2, color=colour)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("fraction labelled FAKE")
    n = (held.get("after") or {}).get("n", 0)
    top.set_title(f"Calibration {version}: reliability on {n} held-out labelled videos")
    top.legend(loc="upper left", fontsize="small")
    bottom.set_xlabel("fused P(fake)")
    bottom.set_ylabel("videos")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


# --- scheduling -----------------------------------------------------------------------------------


def recalibrate_schedule() -> dict[str, dict[str, Any]]:
    """Beat entries: a scheduled fit every VERITY_RECALIBRATE_INTERVAL_S seconds (unset or 0: none)."""
    raw = os.environ.get("VERITY_RECALIBRATE_INTERVAL_S", "").strip()
    try:
        interval = float(raw) if raw else 0.0
    except ValueError as exc:
        raise ValueError(f"VERITY_RECALIBRATE_INTERVAL_S must be a number of seconds, got {raw!r}") from exc
    if interval <= 0:
        return {}
    return {"recalibrate": {"task": TaskName.RECALIBRATE, "schedule": timedelta(seconds=interval)}}


def auto_activate_default() -> bool:
    return os.environ.get("VERITY_RECALIBRATE_AUTO_ACTIVATE", "").strip().lower() in {"1", "true", "yes", "on"}


# --- the command ----------------------------------------------------------------------------------


def _print(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def _parse_aggregators(items: Sequence[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, spec = item.partition("=")
        if not sep or not name or not spec:
            raise SystemExit(f"--aggregator takes MODEL=SPEC, got {item!r}")
        out[name] = spec
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m workers.recalibrate", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_fit = sub.add_parser("fit", help="fit a new candidate version from the current feedback")
    p_fit.add_argument("--target-fpr", type=float)
    p_fit.add_argument("--uncertain-band", type=float)
    p_fit.add_argument("--method", choices=FUSION_METHODS)
    p_fit.add_argument("--min-per-class", type=int)
    p_fit.add_argument("--min-isotonic", type=int)
    p_fit.add_argument("--seed", type=int)
    p_fit.add_argument("--auto-activate", action="store_true", help="activate it if the held-out metrics are better")
    sub.add_parser("list", help="list the versions, newest first")
    p_show = sub.add_parser("show", help="one version in full")
    p_show.add_argument("version")
    p_act = sub.add_parser("activate", help="activate a version (activating an earlier one is the rollback)")
    p_act.add_argument("version")
    p_replay = sub.add_parser("replay", help="re-score a stored job under a version, without the GPU")
    p_replay.add_argument("job_id")
    p_replay.add_argument("--version", help="a version, or 'none' (default: the job's own)")
    p_replay.add_argument("--method", choices=FUSION_METHODS)
    p_replay.add_argument("--aggregator", action="append", default=[], metavar="MODEL=SPEC")
    p_png = sub.add_parser("png", help="write a version's reliability diagram")
    p_png.add_argument("version")
    p_png.add_argument("-o", "--output", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        if args.command == "fit":
            config = config_from_env(
                target_fpr=args.target_fpr,
                uncertain_band=args.uncertain_band,
                fusion_method=args.method,
                min_per_class=args.min_per_class,
                min_isotonic_labels=args.min_isotonic,
                seed=args.seed,
            )
            _print(fit(config, auto_activate=args.auto_activate))
        elif args.command == "list":
            _print(list_versions())
        elif args.command == "show":
            _print(get_version(args.version, full=True))
        elif args.command == "activate":
            _print(activate(args.version, by="command line"))
        elif args.command == "replay":
            _print(replay(args.job_id, args.version, args.method, _parse_aggregators(args.aggregator)))
        elif args.command == "png":
            with open(args.output, "wb") as fh:
                fh.write(reliability_png(args.version))
            print(args.output)
    except (NotEnoughLabels, CalibrationNotFound, ReplayError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
