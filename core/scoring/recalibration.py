"""Moderator labels + stored per-model scores -> a new calibration version, evaluated before vs after.

Pure (numpy, and scikit-learn inside ``fit_stacker``): no database, no torch, no GPU. The caller gives one
``LabelledJob`` per labelled video: its label and the per-model *aggregated* scores the pipeline stored
(the worst track's, plus every track's when known). From a seeded, stratified train / held-out split:

- per model, an isotonic calibrator (Platt below ``min_isotonic_labels``) of the aggregated score;
- per model, a feedback weight: how often the model's own decision (aggregated score > 0.5) agreed with
  the moderators, through ``override.feedback_weight``; models at or above ``reliable_accuracy`` are
  the "reliable" ones of the real-evidence cap;
- the logistic-regression stacker over the calibrated scores (``fusion.fit_stacker``), and over the forensic
  signals that pass the feature-health checks on the training part (broken ones are left out and reported,
  a broken ``required_signals`` one refuses the fit), with its feature importances in the metrics;
- T_high so that at most ``target_fpr`` of the real training videos score above it, and T_low so that
  about ``uncertain_band`` of the training videos fall in [T_low, T_high].

Every video is scored with ``verdict.score_video`` itself (each track's aggregated score passed as a
single frame through the ``mean`` aggregator, which returns it unchanged), so training, evaluation and
production share one code path: calibration, weights, fusion, the real-evidence cap and the most-fake
track. The held-out part is scored under the current setup ("before") and the new one ("after").
"""

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.scoring.calibration import Calibrator, IdentityCalibrator, fit_isotonic, fit_platt
from core.scoring.fusion import fit_stacker
from core.scoring.metrics import ece, reliability_bins, roc_auc, summary
from core.scoring.override import feedback_weight
from core.scoring.recalibration_config import RecalibrationConfig
from core.scoring.recalibration_steps import (
    apply_calibrator,
    choose_thresholds,
    class_counts,
    is_better,
    model_decision_counts,
    score_jobs,
    select_models,
    signal_matrix,
    smoothed_accuracy,
    stacker_report,
    stratified_split,
    usable_signals,
)
from core.scoring.recalibration_types import LabelledJob, NotEnoughLabels, Recalibration, Setup
from core.scoring.verdict import CalibrationState, FusionSpec
from core.signals import SIGNALS, SignalSpec
from core.vocabulary import FUSION_METHODS

_IDENTITY = IdentityCalibrator()


def recalibrate(
    jobs: Sequence[LabelledJob],
    current: Setup,
    config: RecalibrationConfig | None = None,
    catalogue: Sequence[SignalSpec] = SIGNALS,
) -> Recalibration:
    """Fit a new calibration from labelled jobs and evaluate it against ``current`` on held-out jobs.

    NotEnoughLabels when there are fewer than ``config.min_per_class`` REAL or FAKE jobs with scores;
    BrokenFeatures when a required signal is broken. ``catalogue``: the signals the stacker may use.
    """
    config = config or RecalibrationConfig()
    usable = [
        LabelledJob(
            j.job_id,
            j.label,
            {m: float(s) for m, s in j.scores.items() if s is not None and math.isfinite(s)},
            j.tracks,
            j.signals,
        )
        for j in jobs
    ]
    # In job-id order, so the fit (the stacker's folds included) does not depend on the order rows came in.
    usable = sorted((j for j in usable if j.scores), key=lambda j: j.job_id)
    have = class_counts([j.label for j in usable])
    need = config.min_per_class
    if min(have.values()) < need:
        raise NotEnoughLabels(need, have["real"], have["fake"])
    models, rows, skipped = select_models(usable, need)
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
            "held_out_ece_before": ece(y_held, apply_calibrator(old, s_held), config.n_bins),
            "held_out_ece_after": ece(y_held, apply_calibrator(calibrators[m], s_held), config.n_bins),
        }

    # The stacker over calibrated scores (the fusion input) and the healthy signals, fitted whatever the method.
    x_train = np.array([[calibrators[m].apply(j.scores[m]) for m in models] for j in train], dtype=np.float64)
    signals, health = usable_signals(train, catalogue, config.max_signal_nan, config.required_signals)
    stacker = fit_stacker(
        x_train,
        y_train,
        list(models),
        signal_values=signal_matrix(train, signals),
        signal_names=signals,
        mostly_nan_above=config.max_signal_nan,
    )
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
        fused_train = score_jobs(train, models, new_setup(which), catalogue=catalogue)
        ok = [i for i, s in enumerate(fused_train) if s is not None]
        if not ok or min(class_counts([int(y_train[i]) for i in ok]).values()) == 0:
            continue
        t_low, t_high = choose_thresholds(
            y_train[ok],
            np.array([fused_train[i] for i in ok], dtype=np.float64),
            config.target_fpr,
            config.uncertain_band,
        )
        by_method[which] = {"t_low": t_low, "t_high": t_high}
        held_after[which] = score_jobs(held, models, new_setup(which, t_low, t_high), catalogue=catalogue)
    if method not in by_method:
        raise ValueError(f"fusion method {method!r} could not score the training jobs")

    # Held-out evaluation: only jobs both setups could score, so before and after see the same videos.
    before_scores = score_jobs(held, models, current, catalogue=catalogue)
    after_scores = held_after[method]
    both = [i for i in range(len(held)) if before_scores[i] is not None and after_scores[i] is not None]
    y_both = y_held[both]
    after_s = np.array([after_scores[i] for i in both], dtype=np.float64)
    t_low, t_high = by_method[method]["t_low"], by_method[method]["t_high"]
    after = summary(y_both, after_s, t_low, t_high, config.target_fpr, config.n_bins)
    before: dict[str, Any] | None = None
    before_bins: list[dict[str, Any]] = []
    if both and min(class_counts(y_both.tolist()).values()) > 0:
        before_s = np.array([before_scores[i] for i in both], dtype=np.float64)
        before = summary(
            y_both, before_s, current.fusion.t_low, current.fusion.t_high, config.target_fpr, config.n_bins
        )
        before_bins = [b.to_dict() for b in reliability_bins(y_both, before_s, config.n_bins)]
    better, reasons = is_better(before, after)
    for which, scores in held_after.items():
        idx = [i for i, s in enumerate(scores) if s is not None]
        ys = y_held[idx]
        if which != method and idx and min(class_counts(ys.tolist()).values()) > 0:
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
        "stacker": stacker_report(stacker, x_train, models, health, catalogue),
        "after_by_method": after_by_method,
        "reliability": {
            "before": before_bins,
            "after": [b.to_dict() for b in reliability_bins(y_both, after_s, config.n_bins)],
        },
    }
    fitted_on: dict[str, Any] = {
        "labels": len(rows),
        **class_counts(labels),
        "train": class_counts(y_train.tolist()),
        "held_out": class_counts(y_held.tolist()),
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
