"""One video's per-frame model scores -> its verdict, with everything needed to explain it.

Per face track: each working model's frames are aggregated (the member's aggregator), calibrated,
and fused with weight = member weight × feedback multiplier; then the real-evidence cap. A video is
fake if any person in it is, so its score is its most-fake track's. Then the forensic real-evidence
cap (several real-world cues among the signals), the known-content override, and the three-way
decision. The forensic signals enter a stacker fitted with them; otherwise their rule-based reading
rides beside the verdict (``VideoScore.signals``) without changing it.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.scoring.aggregation import aggregate, parse_aggregator
from core.scoring.calibration import Calibrator, IdentityCalibrator, calibrator_from_dict
from core.scoring.decision import decide
from core.scoring.fusion import NotEnoughModels, fuse, uses_signals
from core.scoring.override import Override, forensic_real_cap, known_content_override, real_evidence_cap
from core.scoring.signal_rules import rule_score
from core.signals import SIGNALS, SignalReading, SignalReport, SignalSpec
from core.vocabulary import FUSION_METHODS, Verdict

FrameScores = Sequence[float] | NDArray[np.floating]

_NO_FAILURES: Mapping[str, str] = MappingProxyType({})
_IDENTITY = IdentityCalibrator()


@dataclass(frozen=True)
class MemberSpec:
    """One ensemble member: its name, frame aggregator spec and base fusion weight."""

    name: str
    aggregator: str
    weight: float

    def __post_init__(self) -> None:
        parse_aggregator(self.aggregator)  # a bad spec fails when the pack is loaded, not mid-job
        if not (math.isfinite(self.weight) and self.weight >= 0.0):
            raise ValueError(f"weight of {self.name!r} must be finite and >= 0, got {self.weight}")


@dataclass(frozen=True)
class FusionSpec:
    """How to fuse and decide. ``params`` is the stacker's ``StackerParams.to_dict()`` form."""

    method: str
    t_low: float
    t_high: float
    min_models: int
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}; expected one of {FUSION_METHODS}")
        if not 0.0 <= self.t_low <= self.t_high <= 1.0:
            raise ValueError(f"need 0 <= t_low <= t_high <= 1, got {self.t_low}, {self.t_high}")
        if self.min_models < 1:
            raise ValueError(f"min_models must be >= 1, got {self.min_models}")


@dataclass(frozen=True)
class CalibrationState:
    """What one calibration version contributes. ``version`` None = identity everywhere."""

    version: str | None
    calibrators: Mapping[str, Calibrator]
    feedback_weights: Mapping[str, float]  # multipliers; missing = 1.0
    reliable_models: frozenset[str]
    real_cap: float = 0.40

    def __post_init__(self) -> None:
        if self.version is None and self.calibrators:
            raise ValueError("calibrators without a calibration version could not be traced in results")
        for name, w in self.feedback_weights.items():
            if not (math.isfinite(w) and w > 0.0):
                raise ValueError(f"feedback weight of {name!r} must be finite and > 0, got {w}")
        if not 0.0 <= self.real_cap <= 1.0:
            raise ValueError(f"real_cap must be in [0, 1], got {self.real_cap}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "calibrators": {name: cal.to_dict() for name, cal in self.calibrators.items()},
            "feedback_weights": dict(self.feedback_weights),
            "reliable_models": sorted(self.reliable_models),
            "real_cap": self.real_cap,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CalibrationState":
        return cls(
            version=data["version"],
            calibrators={name: calibrator_from_dict(c) for name, c in data["calibrators"].items()},
            feedback_weights={name: float(w) for name, w in data["feedback_weights"].items()},
            reliable_models=frozenset(data["reliable_models"]),
            real_cap=float(data["real_cap"]),
        )


@dataclass(frozen=True)
class ModelScore:
    """One model on the worst track. ``weight`` is the effective one (base × feedback)."""

    aggregator: str
    weight: float
    frames: int
    aggregated: float | None
    calibrated: float | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "frames": self.frames,
            "aggregated": self.aggregated,
            "calibrated": self.calibrated,
            "weight": self.weight,
            "aggregator": self.aggregator,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class TrackScore:
    """One face track: its score after the real-evidence cap, before it (``raw_fused``), the most
    frames any model scored on it, and each working model's aggregated score."""

    score: float
    raw_fused: float
    frames: int
    per_model: Mapping[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "raw_fused": self.raw_fused,
            "frames": self.frames,
            "per_model": dict(self.per_model),
        }


@dataclass(frozen=True)
class VideoScore:
    verdict: Verdict
    score: float
    raw_fused: float
    method: str
    thresholds: Mapping[str, float]
    worst_track: int
    per_model: Mapping[str, ModelScore]
    per_track: Mapping[int, TrackScore]
    overrides: tuple[Override, ...]
    calibration_version: str | None
    signals: SignalReading | None = None  # the signals' rule-based reading, when given and not fused

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form; track ids become strings, as JSON object keys must be."""
        out = {
            "verdict": self.verdict.value,
            "score": self.score,
            "raw_fused": self.raw_fused,
            "method": self.method,
            "thresholds": dict(self.thresholds),
            "worst_track": self.worst_track,
            "per_model": {name: m.to_dict() for name, m in self.per_model.items()},
            "per_track": {str(tid): t.to_dict() for tid, t in self.per_track.items()},
            "overrides": [o.to_dict() for o in self.overrides],
            "calibration_version": self.calibration_version,
        }
        if self.signals is not None:
            out["signals"] = self.signals.to_json()
        return out


@dataclass(frozen=True)
class _Track:
    track_id: int
    frames: Mapping[str, int]
    aggregated: Mapping[str, float]
    calibrated: Mapping[str, float]
    raw_fused: float
    cap: Override | None

    @property
    def score(self) -> float:
        return self.raw_fused if self.cap is None else self.cap.after


def _working_members(
    track_scores: Mapping[str, Mapping[int, FrameScores]],
    members: Sequence[MemberSpec],
    fusion: FusionSpec,
    failed_models: Mapping[str, str],
) -> list[MemberSpec]:
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate member names: {names}")
    unknown = sorted((set(track_scores) | set(failed_models)) - set(names))
    if unknown:
        raise ValueError(f"scores or errors for models that are not ensemble members: {unknown}")
    # A member with neither scores nor an error means the caller lost track of it: say so.
    silent = sorted(set(names) - set(track_scores) - set(failed_models))
    if silent:
        raise ValueError(f"members with neither scores nor an error: {silent}")
    working = [m for m in members if m.name not in failed_models]
    if len(working) < fusion.min_models:
        errors = "; ".join(f"{name}: {err}" for name, err in sorted(failed_models.items()))
        raise NotEnoughModels(len(working), fusion.min_models, f"failed: {errors}")
    return working


def _score_track(
    track_id: int,
    track_scores: Mapping[str, Mapping[int, FrameScores]],
    working: Sequence[MemberSpec],
    weights: Mapping[str, float],
    fusion: FusionSpec,
    calibration: CalibrationState | None,
    signals: Mapping[str, float] | None,
) -> _Track:
    frames: dict[str, int] = {}
    aggregated: dict[str, float] = {}
    calibrated: dict[str, float] = {}
    for member in working:
        scores = track_scores[member.name].get(track_id)
        if scores is None or len(scores) == 0:
            raise ValueError(f"model {member.name!r} has no frame scores for track {track_id}")
        calibrator = _IDENTITY if calibration is None else calibration.calibrators.get(member.name, _IDENTITY)
        frames[member.name] = len(scores)
        aggregated[member.name] = aggregate(scores, member.aggregator)
        calibrated[member.name] = calibrator.apply(aggregated[member.name])
    raw = fuse(fusion.method, calibrated, weights, fusion.params, fusion.min_models, signals)
    cap = None
    if calibration is not None:
        cap = real_evidence_cap(raw, calibrated, calibration.reliable_models, cap=calibration.real_cap)
    return _Track(track_id, frames, aggregated, calibrated, raw, cap)


def score_video(
    track_scores: Mapping[str, Mapping[int, FrameScores]],
    members: Sequence[MemberSpec],
    fusion: FusionSpec,
    calibration: CalibrationState | None = None,
    failed_models: Mapping[str, str] = _NO_FAILURES,
    known_label: str | None = None,
    signals: SignalReport | None = None,
    catalogue: Sequence[SignalSpec] = SIGNALS,
) -> VideoScore:
    """Score one video from ``track_scores[model][track_id]`` = that model's per-frame P(fake).

    ``signals``: the video's forensic signals (``catalogue`` says what each means). A stacker fitted with
    them uses them; with any other fusion their rule-based reading is returned beside the verdict
    (``VideoScore.signals``). Either way, at least ``override.MIN_REAL_CUES`` real-world cues among them
    cap the score at the calibration's real cap (0.40 without a calibration).

    ``failed_models`` maps a member that errored to its error; it is reported and left out of
    fusion. NotEnoughModels if fewer than ``fusion.min_models`` members work. ValueError when there
    are no tracks (the caller reports NO_FACE) or the inputs disagree with ``members``.
    """
    working = _working_members(track_scores, members, fusion, failed_models)
    track_ids = sorted({tid for m in working for tid in track_scores[m.name]})
    if not track_ids:
        raise ValueError("no face tracks to score; the caller reports NO_FACE")

    feedback = {} if calibration is None else calibration.feedback_weights
    weights = {m.name: m.weight * feedback.get(m.name, 1.0) for m in members}
    values = None if signals is None else signals.values
    tracks = [_score_track(tid, track_scores, working, weights, fusion, calibration, values) for tid in track_ids]
    # max() keeps the first of equal scores, so ties go to the lowest track id.
    worst = max(tracks, key=lambda t: t.score)

    overrides = [] if worst.cap is None else [worst.cap]
    score = worst.score
    fused_signals = fusion.method == "stacker" and uses_signals(fusion.params)
    signal_score = None if values is None or fused_signals else rule_score(values, catalogue)
    if values is not None:
        # The signals describe the whole video, so their cap acts on its score, after the most-fake track.
        real_cap = CalibrationState.real_cap if calibration is None else calibration.real_cap
        forensic = forensic_real_cap(score, values, catalogue, cap=real_cap)
        if forensic is not None:
            overrides.append(forensic)
            score = forensic.after
    known = known_content_override(known_label, score)
    if known is None and signals is not None and signals.scope is not None:
        # Out of scope (core/scope.py): the scores stay, but no REAL or FAKE is claimed from them.
        verdict = Verdict.NOT_APPLICABLE
    elif known is None:
        verdict = decide(score, fusion.t_low, fusion.t_high)
    else:
        overrides.append(known)
        score = known.after
        # The moderator's label is the verdict; it is not re-derived from thresholds.
        verdict = Verdict.FAKE if known.after == 1.0 else Verdict.REAL

    per_model = {
        m.name: ModelScore(
            aggregator=m.aggregator,
            weight=weights[m.name],
            frames=worst.frames.get(m.name, 0),
            aggregated=worst.aggregated.get(m.name),
            calibrated=worst.calibrated.get(m.name),
            error=failed_models.get(m.name),
        )
        for m in members
    }
    per_track = {
        t.track_id: TrackScore(
            score=t.score, raw_fused=t.raw_fused, frames=max(t.frames.values()), per_model=dict(t.aggregated)
        )
        for t in tracks
    }
    return VideoScore(
        verdict=verdict,
        score=score,
        raw_fused=worst.raw_fused,
        method=fusion.method,
        thresholds={"t_low": fusion.t_low, "t_high": fusion.t_high},
        worst_track=worst.track_id,
        per_model=per_model,
        per_track=per_track,
        overrides=tuple(overrides),
        calibration_version=None if calibration is None else calibration.version,
        signals=signal_score,
    )
