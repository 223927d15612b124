"""Replay: re-score a stored job from its stored scores, under any calibration version, without the GPU.

Pure: the caller (``db.calibrations``) reads the stored result, its frame scores and the versions involved;
this module turns them into a new ``score_video`` run. Under the job's own version and options it reproduces
the stored verdict and score exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.pack_defaults import PackDefaults
from core.results import read_overrides, read_per_model, read_tracks
from core.scoring.override import KNOWN_CONTENT
from core.scoring.recalibration_types import VersionSpec
from core.scoring.verdict import FusionSpec, MemberSpec, score_video
from core.signals import SignalReport
from core.vocabulary import FUSION_METHODS


class ReplayError(ValueError):
    """A job that cannot be replayed (no result, no scores, an unknown option); the message says why."""


@dataclass(frozen=True)
class StoredModel:
    """One model's entry in a stored result: its aggregated score (None when it failed), its effective weight
    (base × the job's feedback multiplier), its aggregator and its error."""

    aggregated: float | None
    weight: float = 1.0
    aggregator: str | None = None
    error: str | None = None

    @property
    def working(self) -> bool:
        return not self.error and self.aggregated is not None and math.isfinite(self.aggregated)


@dataclass(frozen=True)
class StoredScores:
    """What recalibration and replay read from a stored result: per-model entries, each track's per-model
    aggregated scores by track id, the label a known-content override applied (if any) and its forensic
    signals (None: stored without them)."""

    per_model: Mapping[str, StoredModel] = field(default_factory=dict)
    tracks: Mapping[int, Mapping[str, float]] = field(default_factory=dict)
    known_label: str | None = None
    signals: SignalReport | None = None

    def working_scores(self) -> dict[str, float]:
        """Aggregated scores of the models that did not fail."""
        return {name: m.aggregated for name, m in self.per_model.items() if m.working and m.aggregated is not None}

    def finite_tracks(self) -> list[dict[str, float]]:
        """Each track's finite per-model scores, tracks without any left out."""
        out = [{k: v for k, v in t.items() if math.isfinite(v)} for t in self.tracks.values()]
        return [t for t in out if t]


def stored_scores(
    per_model: Mapping[str, Any] | None,
    tracks: Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None,
    signals: Mapping[str, Any] | None = None,
) -> StoredScores:
    """A stored result's scores as replay and recalibration use them, read through core.results (the one reader
    of the result columns)."""
    models = {
        name: StoredModel(s.aggregated, s.weight, s.aggregator or None, s.error)
        for name, s in read_per_model(per_model).items()
    }
    by_id = {t.track_id: dict(t.per_model) for t in read_tracks(tracks).tracks}
    known = next(
        ("FAKE" if o.after == 1.0 else "REAL" for o in read_overrides(overrides) if o.kind == KNOWN_CONTENT), None
    )
    return StoredScores(models, by_id, known, SignalReport.from_json(signals))


@dataclass(frozen=True)
class StoredResult:
    """The stored outcome a replay compares with, and the scores it re-scores."""

    verdict: str
    score: float | None
    raw_score: float | None
    method: str | None
    t_low: float | None
    t_high: float | None
    calibration_version: str | None
    scores: StoredScores

    def view(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "score": self.score,
            "raw_score": self.raw_score,
            "method": self.method,
            "t_low": self.t_low,
            "t_high": self.t_high,
            "calibration_version": self.calibration_version,
        }


@dataclass(frozen=True)
class StoredFrameScore:
    model: str
    track_id: int
    score: float


@dataclass(frozen=True)
class ReplayTarget:
    """The version to replay under: ``spec`` None is no calibration; ``own`` is the version the job was made with."""

    name: str | None
    spec: VersionSpec | None
    own: VersionSpec | None


def check_method(method: str | None) -> None:
    if method is not None and method not in FUSION_METHODS:
        raise ReplayError(f"method must be one of {FUSION_METHODS}, got {method!r}")


def replay_scores(
    job_id: str,
    stored: StoredResult,
    frames: Sequence[StoredFrameScore],
    target: ReplayTarget,
    pack: PackDefaults,
    method: str | None = None,
    aggregators: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Re-score ``stored`` under ``target``: its frame scores (or, without them, its per-track aggregated scores)
    through ``score_video``, optionally under another fusion ``method`` or per-model aggregators."""
    check_method(method)
    aggregators = dict(aggregators or {})
    per_model = stored.scores.per_model
    base: dict[str, Any] = {"job_id": job_id, "version": target.name, "stored": stored.view()}
    if not per_model:
        return {**base, "replayed": None, "reason": f"the stored result ({stored.verdict}) has no model scores"}

    own = target.own
    own_weights = {} if own is None else own.state.feedback_weights
    same_version = target.name == stored.calibration_version
    members: list[MemberSpec] = []
    failed: dict[str, str] = {}
    # Members in the pack's order, as the pipeline passed them: Noisy-OR's product rounds differently in
    # another order, and JSONB does not keep key order. Models the pack no longer has go last, by name.
    rank = {name: i for i, name in enumerate(pack.weights)}
    for name in sorted(per_model, key=lambda n: (rank.get(n, len(rank)), n)):
        entry = per_model[name]
        # The stored weight is base × the job's own feedback multiplier; under another version the base is
        # recovered and that version's multiplier applied (score_video multiplies by the state's weights).
        weight = entry.weight if same_version else entry.weight / own_weights.get(name, 1.0)
        try:
            members.append(MemberSpec(name, aggregators.pop(name, entry.aggregator or "mean"), weight))
        except ValueError as exc:  # a bad aggregator spec
            raise ReplayError(str(exc)) from exc
        if entry.error or entry.aggregated is None:
            failed[name] = entry.error or "no score stored"
    if aggregators:
        raise ReplayError(f"aggregators given for models the job did not run: {sorted(aggregators)}")

    working = [m.name for m in members if m.name not in failed]
    track_scores: dict[str, dict[int, list[float]]] = {name: {} for name in working}
    source = "frame_scores"
    for frame in frames:
        if frame.model in track_scores:
            track_scores[frame.model].setdefault(frame.track_id, []).append(frame.score)
    if not any(track_scores.values()):
        if any(m.aggregator != per_model[m.name].aggregator for m in members):
            raise ReplayError("the job has no stored frame scores, so other aggregators cannot be replayed")
        source = "stored_aggregates"
        members = [replace(m, aggregator="mean") for m in members]
        by_track = stored.scores.tracks or {0: {n: float(per_model[n].aggregated or 0.0) for n in working}}
        track_scores = {n: {tid: [s[n]] for tid, s in by_track.items() if n in s} for n in working}

    if same_version:
        # Effective weights are already in the members; the state must not multiply them again.
        state = None if own is None else replace(own.state, feedback_weights={})
        if method is None or method == stored.method:
            params = _stacker_params(own, pack.fusion) if stored.method == "stacker" else {}
            fusion = FusionSpec(str(stored.method), float(stored.t_low or 0.0), float(stored.t_high or 0.0), 1, params)
        else:
            fusion = _other_method(own, pack.fusion, method)
    else:
        state = None if target.spec is None else target.spec.state
        fusion = _other_method(target.spec, pack.fusion, method)
    try:
        scored = score_video(
            track_scores, members, fusion, state, failed, stored.scores.known_label, signals=stored.scores.signals
        ).to_dict()
    except ValueError as exc:  # NotEnoughModels included
        raise ReplayError(f"cannot replay job {job_id}: {exc}") from exc
    scored["calibration_version"] = target.name
    return {
        **base,
        "source": source,
        "method": fusion.method,
        "replayed": scored,
        "same_verdict": scored["verdict"] == stored.verdict,
        "same_score": scored["score"] == stored.score,
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
