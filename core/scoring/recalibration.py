"""Moderator labels + stored per-model scores -> a new calibration version, evaluated before vs after.

Pure (numpy, and scikit-learn inside ``fit_stacker``): no database, no torch, no GPU. The caller gives one
``LabelledJob`` per labelled video: its label and the per-model *aggregated* scores the pipeline stored
(the worst track's, plus every track's when known). From a seeded, stratified train / held-out split:

- per model, an isotonic calibrator (Platt below ``min_isotonic_labels``) of the aggregated score;
- per model, a feedback weight: how often the model's own decision (aggregated score > 0.5) agreed with
  the moderators, through ``override.feedback_weight``; models at or above ``reliable_accuracy`` are
  the "reliable" ones of the real-evidence cap;
- the logistic-regression stacker over the calibrated scores (``fusion.fit_stacker``);
- T_high so that at most ``target_fpr`` of the real training videos score above it, and T_low so that
  about ``uncertain_band`` of the training videos fall in [T_low, T_high].

Every video is scored with ``verdict.score_video`` itself (each track's aggregated score passed as a
single frame through the ``mean`` aggregator, which returns it unchanged), so training, evaluation and
production share one code path: calibration, weights, fusion, the real-evidence cap and the most-fake
track. The held-out part is scored under the current setup ("before") and the new one ("after").
"""

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.scoring.calibration import Calibrator, IdentityCalibrator, calibrator_from_dict, fit_isotonic, fit_platt
from core.scoring.fusion import NotEnoughModels, StackerParams, fit_stacker
from core.scoring.metrics import ece, reliability_bins, roc_auc, summary
from core.scoring.override import feedback_weight
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.vocabulary import FUSION_METHODS

_IDENTITY = IdentityCalibrator()


class NotEnoughLabels(ValueError):
    """Too few labelled videos to fit honestly; the message says how many are needed and how many there are."""

    def __init__(self, needed_per_class: int, have_real: int, have_fake: int, detail: str = "") -> None:
        self.needed_per_class = needed_per_class
        self.have_real = have_real
        self.have_fake = have_fake
        message = (
            f"recalibration needs at least {needed_per_class} REAL and {needed_per_class} FAKE labelled jobs "
            f"with stored per-model scores{detail}; have {have_real} REAL and {have_fake} FAKE"
        )
        super().__init__(message)

    def to_dict(self) -> dict[str, int]:
        return {
            "needed_per_class": self.needed_per_class,
            "have_real": self.have_real,
            "have_fake": self.have_fake,
        }


@dataclass(frozen=True)
class LabelledJob:
    """One labelled video. ``scores``: per-model aggregated P(fake) of the worst track (what the result
    stores per model); ``tracks``: every track's per-model aggregated scores, when known."""

    job_id: str
    label: int  # 1 = FAKE, 0 = REAL
    scores: Mapping[str, float]
    tracks: Sequence[Mapping[str, float]] = ()

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"label of {self.job_id} must be 0 (REAL) or 1 (FAKE), got {self.label!r}")


@dataclass(frozen=True)
class Setup:
    """How videos are scored: a calibration state (None = identity), a fusion spec, base member weights."""

    state: CalibrationState | None
    fusion: FusionSpec
    base_weights: Mapping[str, float] = field(default_factory=dict)  # missing = 1.0


@dataclass(frozen=True)
class RecalibrationConfig:
    target_fpr: float = 0.05
    uncertain_band: float = 0.05  # share of the training videos between T_low and T_high
    held_out_fraction: float = 0.3
    seed: int = 0
    min_per_class: int = 10  # fewer REAL or FAKE labels than this: NotEnoughLabels
    min_isotonic_labels: int = 50  # a model with fewer training labels gets Platt scaling
    reliable_accuracy: float = 0.8  # smoothed agreement with moderators that makes a model "reliable"
    fusion_method: str | None = None  # None: keep the current method
    weight_range: tuple[float, float] = (0.3, 2.2)
    real_cap: float = 0.40
    n_bins: int = 10

    def __post_init__(self) -> None:
        if not 0.0 < self.target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in (0, 1), got {self.target_fpr}")
        if not 0.0 <= self.uncertain_band < 1.0:
            raise ValueError(f"uncertain_band must be in [0, 1), got {self.uncertain_band}")
        if not 0.0 < self.held_out_fraction <= 0.5:
            raise ValueError(f"held_out_fraction must be in (0, 0.5], got {self.held_out_fraction}")
        if self.min_per_class < 5:
            # 3-fold stacker calibration needs 3 of each class in training and the held-out part one more.
            raise ValueError(f"min_per_class must be >= 5, got {self.min_per_class}")
        if self.min_isotonic_labels < 1:
            raise ValueError(f"min_isotonic_labels must be >= 1, got {self.min_isotonic_labels}")
        if not 0.5 <= self.reliable_accuracy <= 1.0:
            raise ValueError(f"reliable_accuracy must be in [0.5, 1], got {self.reliable_accuracy}")
        if self.fusion_method is not None and self.fusion_method not in FUSION_METHODS:
            raise ValueError(f"fusion_method must be one of {FUSION_METHODS}, got {self.fusion_method!r}")
        if not 0.0 <= self.real_cap <= 1.0:
            raise ValueError(f"real_cap must be in [0, 1], got {self.real_cap}")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["weight_range"] = list(self.weight_range)
        return out


@dataclass(frozen=True)
class VersionSpec:
    """What one stored calibration version says: its state plus its fusion method, thresholds and params.

    ``min_models`` None keeps the pack's. ``stacker`` is fitted whatever the method, so a replay can try it;
    ``by_method`` holds thresholds fitted for each fusion method.
    """

    state: CalibrationState
    method: str
    t_low: float
    t_high: float
    params: Mapping[str, Any] = field(default_factory=dict)
    min_models: int | None = None
    stacker: Mapping[str, Any] | None = None
    by_method: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def fusion_spec(self, default: FusionSpec, method: str | None = None) -> FusionSpec:
        """The fusion this version scores with; ``default`` (the pack's) supplies ``min_models``.

        ``method`` picks another fusion method with the thresholds this version fitted for it.
        """
        min_models = default.min_models if self.min_models is None else self.min_models
        if method is None or method == self.method:
            return FusionSpec(self.method, self.t_low, self.t_high, min_models, dict(self.params))
        if method not in self.by_method:
            raise ValueError(f"version {self.state.version} has no thresholds for fusion method {method!r}")
        params: Mapping[str, Any] = {}
        if method == "stacker":
            if self.stacker is None:
                raise ValueError(f"version {self.state.version} has no fitted stacker")
            params = self.stacker
        t = self.by_method[method]
        return FusionSpec(method, float(t["t_low"]), float(t["t_high"]), min_models, dict(params))

    @classmethod
    def from_row(
        cls,
        version: str,
        calibrators: Mapping[str, Any],
        feedback_weights: Mapping[str, Any],
        fusion: Mapping[str, Any],
        thresholds: Mapping[str, Any],
    ) -> "VersionSpec":
        """From the JSON columns of a ``calibrations`` row (the inverse of ``Recalibration.row_columns``)."""
        state = CalibrationState(
            version=version,
            calibrators={name: calibrator_from_dict(c) for name, c in calibrators.items()},
            feedback_weights={name: float(w) for name, w in feedback_weights.items()},
            reliable_models=frozenset(fusion.get("reliable_models", ())),
            real_cap=float(fusion.get("real_cap", 0.40)),
        )
        min_models = fusion.get("min_models")
        return cls(
            state=state,
            method=str(fusion["method"]),
            t_low=float(thresholds["t_low"]),
            t_high=float(thresholds["t_high"]),
            params=dict(fusion.get("params") or {}),
            min_models=None if min_models is None else int(min_models),
            stacker=fusion.get("stacker"),
            by_method={m: dict(t) for m, t in (thresholds.get("by_method") or {}).items()},
        )


@dataclass(frozen=True)
class Recalibration:
    """Everything a ``calibrations`` row needs (see ``row_columns``)."""

    calibrators: dict[str, Calibrator]
    feedback_weights: dict[str, float]
    reliable_models: frozenset[str]
    real_cap: float
    method: str
    t_low: float
    t_high: float
    stacker: StackerParams
    by_method: dict[str, dict[str, float]]
    fitted_on: dict[str, Any]
    metrics: dict[str, Any]
    target_fpr: float
    uncertain_band: float

    @property
    def better(self) -> bool:
        return bool(self.metrics["better"])

    def state(self, version: str) -> CalibrationState:
        return CalibrationState(
            version, dict(self.calibrators), dict(self.feedback_weights), self.reliable_models, self.real_cap
        )

    def row_columns(self) -> dict[str, dict[str, Any]]:
        """The JSON columns of a ``calibrations`` row: calibrators, feedback_weights, fusion, thresholds,
        fitted_on, metrics."""
        return {
            "calibrators": {name: c.to_dict() for name, c in self.calibrators.items()},
            "feedback_weights": dict(self.feedback_weights),
            "fusion": {
                "method": self.method,
                "params": self.stacker.to_dict() if self.method == "stacker" else {},
                "stacker": self.stacker.to_dict(),
                "min_models": None,
                "reliable_models": sorted(self.reliable_models),
                "real_cap": self.real_cap,
            },
            "thresholds": {
                "t_low": self.t_low,
                "t_high": self.t_high,
                "target_fpr": self.target_fpr,
                "uncertain_band": self.uncertain_band,
                "by_method": self.by_method,
            },
            "fitted_on": self.fitted_on,
            "metrics": self.metrics,
        }

    def version_spec(self, version: str) -> VersionSpec:
        cols = self.row_columns()
        return VersionSpec.from_row(
            version, cols["calibrators"], cols["feedback_weights"], cols["fusion"], cols["thresholds"]
        )


# --- pieces ---------------------------------------------------------------------------------------


def stratified_split(
    job_ids: Sequence[str], labels: Sequence[int], held_out_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indices (train, held_out): per class, a seeded shuffle of the jobs in id order, so the split does not
    depend on the order rows came in. Each class keeps at least 3 in training and 1 held out when it can."""
    train: list[int] = []
    held: list[int] = []
    rng = np.random.default_rng(seed)
    for cls in (0, 1):
        members = sorted((i for i, y in enumerate(labels) if y == cls), key=lambda i: job_ids[i])
        order = rng.permutation(len(members))
        n = len(members)
        n_held = math.floor(held_out_fraction * n + 0.5)
        n_held = max(1, min(n_held, n - 3)) if n >= 4 else 0
        chosen = [members[j] for j in order]
        held.extend(chosen[:n_held])
        train.extend(chosen[n_held:])
    return sorted(train), sorted(held)


def choose_thresholds(
    labels: NDArray[np.integer] | Sequence[int],
    scores: NDArray[np.floating] | Sequence[float],
    target_fpr: float,
    uncertain_band: float,
) -> tuple[float, float]:
    """(T_low, T_high) from training scores.

    T_high: at most ``floor(target_fpr × n_real)`` real videos score strictly above it (FAKE is
    ``score > T_high``); it sits halfway between the last real allowed below and the first allowed above.
    T_low: about ``uncertain_band`` of all training videos fall in [T_low, T_high], again halfway between
    neighbouring scores. Ties can push the band a little wider than asked.
    """
    y = np.asarray(labels)
    s = np.asarray(scores, dtype=np.float64)
    reals = np.sort(s[y == 0])
    if reals.size == 0:
        raise ValueError("choosing thresholds needs real videos")
    n = reals.size
    allowed = math.floor(target_fpr * n + 1e-9)
    if allowed >= n:
        t_high = 0.0
    elif allowed == 0:
        t_high = float(reals[-1])
    else:
        t_high = float((reals[n - allowed - 1] + reals[n - allowed]) / 2.0)

    below = np.sort(s[s <= t_high])
    band = math.floor(uncertain_band * s.size + 1e-9)
    m = below.size
    if band == 0 or m == 0:
        t_low = t_high
    elif band >= m:
        t_low = 0.0
    else:
        t_low = float((below[m - band - 1] + below[m - band]) / 2.0)
    return min(max(t_low, 0.0), 1.0), min(max(t_high, 0.0), 1.0)


def model_decision_counts(scores: Sequence[float], labels: Sequence[int]) -> tuple[int, int]:
    """(correct, n): how often a model's own decision (FAKE iff score > 0.5) matched the moderators."""
    correct = sum(1 for s, y in zip(scores, labels, strict=True) if (s > 0.5) == (y == 1))
    return correct, len(labels)


def smoothed_accuracy(correct: int, n: int) -> float:
    return (correct + 1) / (n + 2)


def score_jobs(
    jobs: Sequence[LabelledJob], models: Sequence[str], setup: Setup, method: str | None = None
) -> list[float | None]:
    """Each job's fused P(fake) under ``setup`` (None when that setup cannot score it, e.g. a stacker
    that needs a model the job lacks), through ``score_video`` exactly as the pipeline scores it."""
    members = [MemberSpec(m, "mean", float(setup.base_weights.get(m, 1.0))) for m in models]
    fusion = setup.fusion
    if method is not None and method != fusion.method:
        fusion = FusionSpec(method, fusion.t_low, fusion.t_high, fusion.min_models, fusion.params)
    fusion = FusionSpec(
        fusion.method, fusion.t_low, fusion.t_high, max(1, min(fusion.min_models, len(models))), fusion.params
    )
    out: list[float | None] = []
    for job in jobs:
        tracks = [t for t in job.tracks if all(m in t for m in models)] or [job.scores]
        track_scores = {m: {tid: [float(t[m])] for tid, t in enumerate(tracks)} for m in models}
        try:
            out.append(score_video(track_scores, members, fusion, setup.state).score)
        except NotEnoughModels:
            out.append(None)
    return out


def _apply(calibrator: Calibrator, scores: Sequence[float]) -> NDArray[np.float64]:
    return np.array([calibrator.apply(s) for s in scores], dtype=np.float64)


def is_better(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> tuple[bool, list[str]]:
    """Held-out "after" beats "before": a lower Brier score, AUC not lower by more than 0.005, and TPR at
    the target FPR not lower by more than 0.01. Reasons say which held and which did not."""
    if before is None:
        return True, ["nothing to compare with: the current setup scored none of the held-out jobs"]
    checks = [
        (after["brier"] < before["brier"], f"Brier {before['brier']:.4f} -> {after['brier']:.4f}"),
        (after["auc"] >= before["auc"] - 0.005, f"AUC {before['auc']:.4f} -> {after['auc']:.4f}"),
        (
            after["tpr_at_target_fpr"] >= before["tpr_at_target_fpr"] - 0.01,
            f"TPR at FPR {after['target_fpr']}: {before['tpr_at_target_fpr']:.4f} -> {after['tpr_at_target_fpr']:.4f}",
        ),
    ]
    return all(ok for ok, _ in checks), [("ok: " if ok else "worse: ") + text for ok, text in checks]


def _count(labels: Sequence[int]) -> dict[str, int]:
    fake = sum(labels)
    return {"real": len(labels) - fake, "fake": fake}


def _select_models(
    jobs: Sequence[LabelledJob], min_per_class: int
) -> tuple[list[str], list[LabelledJob], dict[str, str]]:
    """Models with enough labels of each class, and the jobs that have every one of them. A model that
    would leave too few complete jobs is dropped (fewest-labelled first) and reported."""
    counts: dict[str, list[int]] = {}
    for job in jobs:
        for name in job.scores:
            counts.setdefault(name, [0, 0])[job.label] += 1
    skipped = {name: f"only {c[0]} REAL and {c[1]} FAKE labels" for name, c in counts.items() if min(c) < min_per_class}
    models = sorted(name for name in counts if name not in skipped)
    while models:
        complete = [j for j in jobs if all(m in j.scores for m in models)]
        per_class = _count([j.label for j in complete])
        if min(per_class.values()) >= min_per_class:
            return models, complete, skipped
        weakest = min(models, key=lambda m: (min(counts[m]), m))
        skipped[weakest] = "too few jobs scored by it together with every other model"
        models.remove(weakest)
    return [], [], skipped


# --- the fit --------------------------------------------------------------------------------------


def recalibrate(
    jobs: Sequence[LabelledJob], current: Setup, config: RecalibrationConfig | None = None
) -> Recalibration:
    """Fit a new calibration from labelled jobs and evaluate it against ``current`` on held-out jobs.

    NotEnoughLabels when there are fewer than ``config.min_per_class`` REAL or FAKE jobs with scores.
    """
    config = config or RecalibrationConfig()
    usable = [
        LabelledJob(
            j.job_id,
            j.label,
            {m: float(s) for m, s in j.scores.items() if s is not None and math.isfinite(s)},
            j.tracks,
        )
        for j in jobs
    ]
    # In job-id order, so the fit (the stacker's folds included) does not depend on the order rows came in.
    usable = sorted((j for j in usable if j.scores), key=lambda j: j.job_id)
    have = _count([j.label for j in usable])
    need = config.min_per_class
    if min(have.values()) < need:
        raise NotEnoughLabels(need, have["real"], have["fake"])
    models, rows, skipped = _select_models(usable, need)
    if not models:
        raise NotEnoughLabels(
            need, have["real"], have["fake"], detail=f" scored by the same model(s); per model: {skipped}"
        )

    labels = [j.label for j in rows]
    train_idx, held_idx = stratified_split([j.job_id for j in rows], labels, config.held_out_fraction, config.seed)
    train = [rows[i] for i in train_idx]
    held = [rows[i] for i in held_idx]
    y_train = np.array([j.label for j in train])
    y_held = np.array([j.label for j in held])

    # Per model: calibrator and feedback weight, from the training part only.
    calibrators: dict[str, Calibrator] = {}
    feedback: dict[str, float] = {}
    reliable: set[str] = set()
    per_model: dict[str, dict[str, Any]] = {}
    lo, hi = config.weight_range
    for m in models:
        s_train = [j.scores[m] for j in train]
        kind = "isotonic" if len(s_train) >= config.min_isotonic_labels else "platt"
        calibrators[m] = fit_isotonic(s_train, y_train) if kind == "isotonic" else fit_platt(s_train, y_train)
        correct, n = model_decision_counts(s_train, y_train.tolist())
        feedback[m] = feedback_weight(correct, n, lo, hi)
        accuracy = smoothed_accuracy(correct, n)
        if accuracy >= config.reliable_accuracy:
            reliable.add(m)
        s_held = [j.scores[m] for j in held]
        old = _IDENTITY if current.state is None else current.state.calibrators.get(m, _IDENTITY)
        per_model[m] = {
            "calibrator": kind,
            "train_labels": n,
            "agreed": correct,
            "smoothed_accuracy": accuracy,
            "feedback_weight": feedback[m],
            "reliable": m in reliable,
            "held_out_auc": _safe(roc_auc, y_held, s_held),
            "held_out_ece_before": ece(y_held, _apply(old, s_held), config.n_bins),
            "held_out_ece_after": ece(y_held, _apply(calibrators[m], s_held), config.n_bins),
        }

    # The stacker over calibrated scores (the fusion input), fitted whatever the method.
    x_train = np.array([[calibrators[m].apply(j.scores[m]) for m in models] for j in train], dtype=np.float64)
    stacker = fit_stacker(x_train, y_train, list(models))
    method = config.fusion_method or current.fusion.method

    def new_setup(which: str, t_low: float = 0.0, t_high: float = 1.0) -> Setup:
        params = stacker.to_dict() if which == "stacker" else {}
        state = CalibrationState("candidate", calibrators, feedback, frozenset(reliable), config.real_cap)
        fusion = FusionSpec(which, t_low, t_high, current.fusion.min_models, params)
        return Setup(state, fusion, current.base_weights)

    by_method: dict[str, dict[str, float]] = {}
    after_by_method: dict[str, Any] = {}
    held_after: dict[str, list[float | None]] = {}
    for which in FUSION_METHODS:
        fused_train = score_jobs(train, models, new_setup(which))
        ok = [i for i, s in enumerate(fused_train) if s is not None]
        if not ok or min(_count([int(y_train[i]) for i in ok]).values()) == 0:
            continue
        t_low, t_high = choose_thresholds(
            y_train[ok],
            np.array([fused_train[i] for i in ok], dtype=np.float64),
            config.target_fpr,
            config.uncertain_band,
        )
        by_method[which] = {"t_low": t_low, "t_high": t_high}
        held_after[which] = score_jobs(held, models, new_setup(which, t_low, t_high))
    if method not in by_method:
        raise ValueError(f"fusion method {method!r} could not score the training jobs")

    # Held-out evaluation: only jobs both setups could score, so before and after see the same videos.
    before_scores = score_jobs(held, models, current)
    after_scores = held_after[method]
    both = [i for i in range(len(held)) if before_scores[i] is not None and after_scores[i] is not None]
    y_both = y_held[both]
    after_s = np.array([after_scores[i] for i in both], dtype=np.float64)
    t_low, t_high = by_method[method]["t_low"], by_method[method]["t_high"]
    after = summary(y_both, after_s, t_low, t_high, config.target_fpr, config.n_bins)
    before: dict[str, Any] | None = None
    before_bins: list[dict[str, Any]] = []
    if both and min(_count(y_both.tolist()).values()) > 0:
        before_s = np.array([before_scores[i] for i in both], dtype=np.float64)
        before = summary(
            y_both, before_s, current.fusion.t_low, current.fusion.t_high, config.target_fpr, config.n_bins
        )
        before_bins = [b.to_dict() for b in reliability_bins(y_both, before_s, config.n_bins)]
    better, reasons = is_better(before, after)
    for which, scores in held_after.items():
        idx = [i for i, s in enumerate(scores) if s is not None]
        ys = y_held[idx]
        if which != method and idx and min(_count(ys.tolist()).values()) > 0:
            t = by_method[which]
            after_by_method[which] = summary(
                ys,
                np.array([scores[i] for i in idx], dtype=np.float64),
                t["t_low"],
                t["t_high"],
                config.target_fpr,
                config.n_bins,
            )

    metrics: dict[str, Any] = {
        "held_out": {
            "before": before,
            "after": after,
            "jobs": len(held),
            "unscorable": len(held) - len(both),
            "before_version": None if current.state is None else current.state.version,
        },
        "better": better,
        "better_reasons": reasons,
        "per_model": per_model,
        "after_by_method": after_by_method,
        "reliability": {
            "before": before_bins,
            "after": [b.to_dict() for b in reliability_bins(y_both, after_s, config.n_bins)],
        },
    }
    fitted_on: dict[str, Any] = {
        "labels": len(rows),
        **_count(labels),
        "train": _count(y_train.tolist()),
        "held_out": _count(y_held.tolist()),
        "models": list(models),
        "skipped_models": skipped,
        "labelled_jobs_without_scores": len(jobs) - len(usable),
        "config": config.to_dict(),
    }
    return Recalibration(
        calibrators=calibrators,
        feedback_weights=feedback,
        reliable_models=frozenset(reliable),
        real_cap=config.real_cap,
        method=method,
        t_low=t_low,
        t_high=t_high,
        stacker=stacker,
        by_method=by_method,
        fitted_on=fitted_on,
        metrics=metrics,
        target_fpr=config.target_fpr,
        uncertain_band=config.uncertain_band,
    )


def _safe(
    fn: Callable[[NDArray[np.integer], Sequence[float]], float], labels: NDArray[np.integer], scores: Sequence[float]
) -> float | None:
    try:
        return float(fn(labels, scores))
    except ValueError:
        return None
