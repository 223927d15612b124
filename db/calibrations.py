"""Calibration versions in the database: gather labels, store a fitted version, activate / roll back, list, and
read what a replay needs.

The service functions (``fit``, ``activate``, ``list_versions``, ``get_version``) take their unit of work as an
argument: a callable opening a ``CalibrationStore`` for one transaction. ``sql_store`` is the real one over
Postgres; unit tests pass an in-memory store. The fit and the replay themselves are pure
(``core.scoring.recalibration``, ``core.scoring.replay``).

Calibration versions are deployment-wide (the ``calibrations`` table has no tenant), so a fit uses the current
REAL/FAKE labels of every tenant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.pack_defaults import PackDefaults
from core.scoring.recalibration import recalibrate
from core.scoring.recalibration_config import RecalibrationConfig
from core.scoring.recalibration_types import LabelledJob, Recalibration, Setup, VersionSpec
from core.scoring.replay import (
    ReplayError,
    ReplayTarget,
    StoredFrameScore,
    StoredResult,
    check_method,
    replay_scores,
    stored_scores,
)
from core.signals import SignalReport
from core.streams.thresholds import PerFrameThresholds, with_per_frame_thresholds
from db.models import Calibration, Feedback, FrameScore, Job, Result, utcnow

log = logging.getLogger(__name__)

CANDIDATE, ACTIVE, RETIRED = "candidate", "active", "retired"
_ACTIVATION_LOCK = 0x56455249  # pg_advisory_xact_lock key ("VERI"): one activation at a time


class CalibrationNotFound(LookupError):
    def __init__(self, version: str) -> None:
        self.version = version
        super().__init__(f"no calibration version {version!r}")


class CalibrationStore(Protocol):
    """The calibration rows and labels one transaction sees."""

    def labelled_jobs(self) -> tuple[list[LabelledJob], dict[str, Any]]: ...
    def get(self, version: str) -> Calibration | None: ...
    def active(self) -> Calibration | None: ...
    def with_status(self, status: str) -> list[Calibration]: ...
    def newest_first(self) -> list[Calibration]: ...
    def count(self) -> int: ...
    def add(self, row: Calibration) -> None: ...
    def lock_activations(self) -> None: ...


Stores = Callable[[], AbstractContextManager[CalibrationStore]]


class SqlCalibrationStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def labelled_jobs(self) -> tuple[list[LabelledJob], dict[str, Any]]:
        return gather_labelled_jobs(self.session)

    def get(self, version: str) -> Calibration | None:
        return self.session.scalar(select(Calibration).where(Calibration.version == version))

    def active(self) -> Calibration | None:
        query = select(Calibration).where(Calibration.status == ACTIVE)
        return self.session.scalar(query.order_by(Calibration.activated_at.desc()).limit(1))

    def with_status(self, status: str) -> list[Calibration]:
        return list(self.session.scalars(select(Calibration).where(Calibration.status == status)))

    def newest_first(self) -> list[Calibration]:
        return list(self.session.scalars(select(Calibration).order_by(Calibration.id.desc())))

    def count(self) -> int:
        return self.session.scalar(select(func.count()).select_from(Calibration)) or 0

    def add(self, row: Calibration) -> None:
        self.session.add(row)

    def lock_activations(self) -> None:
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(_ACTIVATION_LOCK)))


@contextmanager
def sql_store() -> Iterator[CalibrationStore]:
    """One transaction over the database (commits when the block succeeds)."""
    from db.session import session_scope

    with session_scope() as session:
        yield SqlCalibrationStore(session)


def version_spec(row: Calibration) -> VersionSpec:
    return VersionSpec.from_row(row.version, row.calibrators, row.feedback_weights, row.fusion, row.thresholds)


def _row(store: CalibrationStore, version: str) -> Calibration:
    row = store.get(version)
    if row is None:
        raise CalibrationNotFound(version)
    return row


# --- gathering labels -----------------------------------------------------------------------------


def _majority(labels: Sequence[str]) -> str | None:
    counts = Counter(labels)
    if counts["REAL"] == counts["FAKE"]:
        return None
    return "FAKE" if counts["FAKE"] > counts["REAL"] else "REAL"


def gather_labelled_jobs(session: Session) -> tuple[list[LabelledJob], dict[str, Any]]:
    """Every job with a current REAL/FAKE label (the majority when moderators disagree; a tie is left out)
    and a stored result with per-model aggregated scores, with its forensic signals when it has them."""
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
            select(Result.job_id, Result.per_model, Result.tracks, Result.model_pack, Result.signals).where(
                Result.job_id.in_(chunk)
            )
        )
        for job_id, per_model, tracks, model_pack, signals in rows:
            stored = stored_scores(per_model, tracks, None)
            scores = stored.working_scores()
            if not scores:
                continue
            packs[model_pack or "unknown"] += 1
            report = SignalReport.from_json(signals)
            values = {} if report is None else dict(report.values)
            fake = int(decided[job_id] == "FAKE")
            jobs.append(LabelledJob(str(job_id), fake, scores, stored.finite_tracks(), values))
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


def active_version(store: CalibrationStore) -> tuple[str, VersionSpec] | None:
    """The active version's name and spec (None: no version is active)."""
    row = store.active()
    return None if row is None else (row.version, version_spec(row))


def current_setup(store: CalibrationStore, pack: PackDefaults) -> Setup:
    """How jobs are scored now: the active version (if any) over the pack's fusion and base weights."""
    current = active_version(store)
    if current is None:
        return Setup(None, pack.fusion, pack.weights)
    spec = current[1]
    return Setup(spec.state, spec.fusion_spec(pack.fusion), pack.weights)


# --- fit, list, activate --------------------------------------------------------------------------


def _store(stores: Stores, rec: Recalibration, stats: Mapping[str, Any], before_version: str | None) -> str:
    columns = rec.row_columns()
    columns["fitted_on"] = {**columns["fitted_on"], **stats, "before_version": before_version}
    for attempt in range(5):
        try:
            with stores() as store:
                version = f"v{store.count() + 1}" if attempt == 0 else f"v{store.count() + 1}-{attempt}"
                store.add(Calibration(version=version, status=CANDIDATE, **columns))
            return version
        except IntegrityError:  # another fit took the same number; try the next name
            continue
    raise RuntimeError("could not allocate a calibration version name")


def fit(
    stores: Stores,
    pack: PackDefaults,
    config: RecalibrationConfig,
    auto_activate: bool = False,
    skip_if_unchanged: bool = False,
) -> dict[str, Any]:
    """Fit a new ``candidate`` from the current feedback and return its view.

    ``auto_activate`` activates it only when its held-out metrics beat the current setup's.
    ``skip_if_unchanged`` (the scheduled task) fits nothing when the labels are those the newest version
    was fitted on, and returns ``{"skipped": ...}``. NotEnoughLabels propagates.
    """
    with stores() as store:
        jobs, stats = store.labelled_jobs()
        if skip_if_unchanged:
            newest = next(iter(store.newest_first()), None)
            if newest is not None and newest.fitted_on.get("labels_digest") == stats["labels_digest"]:
                return {"skipped": f"no new labels since {newest.version}", "version": newest.version}
        setup = current_setup(store, pack)
    rec = recalibrate(jobs, setup, config)
    version = _store(stores, rec, stats, None if setup.state is None else setup.state.version)
    log.info("calibration %s fitted on %s labels (better: %s)", version, rec.fitted_on["labels"], rec.better)
    if auto_activate and rec.better:
        return activate(stores, version, by="auto: held-out metrics better than the current setup")
    return get_version(stores, version)


def activate(stores: Stores, version: str, by: str = "") -> dict[str, Any]:
    """Make ``version`` the active one; the previously active one becomes ``retired``. Activating an
    earlier version is the rollback. Each activation is appended to the version's audit trail. Workers see
    it within their cache's age (``workers.calibration_cache``)."""
    with stores() as store:
        store.lock_activations()
        row = _row(store, version)
        previous = [r for r in store.with_status(ACTIVE) if r is not row]
        if row.status != ACTIVE or previous:
            now = utcnow()
            for old in previous:
                old.status = RETIRED
            row.status = ACTIVE
            row.activated_at = now
            entry = {"at": now.isoformat(), "previous": [p.version for p in previous], "by": by}
            row.metrics = {**row.metrics, "activations": [*row.metrics.get("activations", []), entry]}
        view = calibration_view(row, full=False)
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


def list_versions(stores: Stores) -> list[dict[str, Any]]:
    with stores() as store:
        return [calibration_view(r) for r in store.newest_first()]


def get_version(stores: Stores, version: str, full: bool = False) -> dict[str, Any]:
    with stores() as store:
        return calibration_view(_row(store, version), full=full)


def save_per_frame_thresholds(stores: Stores, version: str, fitted: PerFrameThresholds, by: str = "") -> dict[str, Any]:
    """Store Option B thresholds the simulator fitted inside ``version`` (core.streams.thresholds), replacing an
    earlier fit for the same averaging; the version's own thresholds are untouched. Logged in its metrics."""
    with stores() as store:
        row = _row(store, version)
        row.thresholds = with_per_frame_thresholds(row.thresholds, fitted)
        entry = {"at": utcnow().isoformat(), "by": by, **fitted.to_dict()}
        row.metrics = {**row.metrics, "per_frame_fits": [*row.metrics.get("per_frame_fits", []), entry]}
        view = calibration_view(row, full=False)
    log.info("calibration %s: Option B (%s) thresholds stored (%s)", version, fitted.averaging.value, by or "-")
    return view


def tenant_labels(session: Session, tenant: str) -> dict[uuid.UUID, str]:
    """One tenant's jobs with a current REAL/FAKE label, decided as ``gather_labelled_jobs`` decides (the
    majority; a tie is left out): the live-stream simulator's labels."""
    votes: dict[uuid.UUID, list[str]] = {}
    for job_id, label in session.execute(
        select(Feedback.job_id, Feedback.label)
        .join(Job, Job.id == Feedback.job_id)
        .where(Job.tenant == tenant, Feedback.is_current.is_(True), Feedback.label.in_(("REAL", "FAKE")))
    ):
        votes.setdefault(job_id, []).append(label)
    decided = {job_id: _majority(labels) for job_id, labels in votes.items()}
    return {job_id: label for job_id, label in decided.items() if label is not None}


# --- replay ---------------------------------------------------------------------------------------


def replay(
    session: Session,
    pack: PackDefaults,
    job_id: str,
    version: str | None = None,
    method: str | None = None,
    aggregators: Mapping[str, str] | None = None,
    tenant: str | None = None,
) -> dict[str, Any]:
    """Re-score a stored job without the GPU (``core.scoring.replay``) under ``version`` (None: the version its
    result was made with; "none": no calibration and the pack's fusion)."""
    check_method(method)
    try:
        job_uuid = uuid.UUID(str(job_id))
    except ValueError as exc:
        raise ReplayError(f"no such job {job_id!r}") from exc
    query = select(Result).join(Job, Job.id == Result.job_id).where(Result.job_id == job_uuid)
    if tenant is not None:
        query = query.where(Job.tenant == tenant)
    result = session.scalar(query)
    if result is None:
        raise ReplayError(f"job {job_id} has no stored result")
    frames = [
        StoredFrameScore(model, int(track_id), float(score))
        for model, track_id, score in session.execute(
            select(FrameScore.model, FrameScore.track_id, FrameScore.score)
            .where(FrameScore.job_id == job_uuid)
            .order_by(FrameScore.track_id, FrameScore.frame_index, FrameScore.id)
        )
    ]
    store = SqlCalibrationStore(session)
    own_name = result.calibration_version
    own = None if own_name is None else version_spec(_row(store, own_name))
    if version is None or version == own_name:
        target = ReplayTarget(own_name, own, own)
    elif version == "none":
        target = ReplayTarget(None, None, own)
    else:
        target = ReplayTarget(version, version_spec(_row(store, version)), own)
    stored = StoredResult(
        result.verdict,
        result.score,
        result.raw_score,
        result.method,
        result.t_low,
        result.t_high,
        own_name,
        stored_scores(result.per_model, result.tracks, result.overrides, result.signals),
    )
    return replay_scores(str(job_uuid), stored, frames, target, pack, method, aggregators)
