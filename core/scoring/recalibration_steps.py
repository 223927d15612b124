"""The steps of a recalibration: the train / held-out split, threshold choice, model selection, the signals fit to
use, scoring a set of labelled jobs under a setup, and the before / after comparison. Pure numpy."""

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from core.scoring.calibration import Calibrator
from core.scoring.feature_health import FeatureHealth, artefact_share, artefact_warning, check_features, require_healthy
from core.scoring.fusion import NotEnoughModels, StackerParams, stacker_importances
from core.scoring.recalibration_types import LabelledJob, Setup
from core.scoring.verdict import FusionSpec, MemberSpec, score_video
from core.signals import SIGNALS, SignalReport, SignalSpec

FACE_MODELS = "face_models"  # the family the importances report the model columns under


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
    jobs: Sequence[LabelledJob],
    models: Sequence[str],
    setup: Setup,
    method: str | None = None,
    catalogue: Sequence[SignalSpec] = SIGNALS,
) -> list[float | None]:
    """Each job's fused P(fake) under ``setup`` (None when that setup cannot score it, e.g. a stacker
    that needs a model the job lacks), through ``score_video`` exactly as the pipeline scores it, with the
    job's signals when it has any."""
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
        signals = SignalReport(job.signals) if job.signals else None
        try:
            out.append(
                score_video(track_scores, members, fusion, setup.state, signals=signals, catalogue=catalogue).score
            )
        except NotEnoughModels:
            out.append(None)
    return out


class WithSignals(Protocol):
    """Anything carrying one video's signal values: a labelled job, an evaluated clip."""

    @property
    def signals(self) -> Mapping[str, float]: ...


def signal_matrix(jobs: Sequence[WithSignals], names: Sequence[str]) -> NDArray[np.float64]:
    """Rows × ``names`` of the jobs' signal values, NaN where not computed."""
    rows = [[float(j.signals.get(name, math.nan)) for name in names] for j in jobs]
    return np.array(rows, dtype=np.float64).reshape(len(jobs), len(names))


def usable_signals(
    train: Sequence[LabelledJob], catalogue: Sequence[SignalSpec], mostly_nan_above: float, required: Sequence[str]
) -> tuple[list[str], FeatureHealth | None]:
    """The catalogue's signals healthy enough to fit on, and the health report (None when no training job has a
    signal and none is required). BrokenFeatures when a required one is broken or not in the data."""
    names = [s.name for s in catalogue]
    if not required and not any(math.isfinite(v) for j in train for v in j.signals.values()):
        return [], None
    expected = [*names, *(name for name in required if name not in names)]
    health = check_features(signal_matrix(train, names), names, expected, mostly_nan_above)
    require_healthy(health, required)
    return [name for name in health.usable if name in names], health


def stacker_report(
    params: StackerParams,
    x_train: NDArray[np.floating],
    models: Sequence[str],
    health: FeatureHealth | None,
    catalogue: Sequence[SignalSpec],
) -> dict[str, Any]:
    """For the version's metrics: the stacker's feature importances (per training std), the share the artefact
    family carries with its warning, and the signals' feature health."""
    importances = stacker_importances(params, x_train, models)
    families = dict.fromkeys(models, FACE_MODELS)
    if params.signals is not None:
        family = {s.name: s.family for s in catalogue}
        families.update({col: family.get(params.signals.source(col), "") for col in params.signals.columns()})
    warning = artefact_warning(importances, families)
    return {
        "importances": importances,
        "artefact_share": artefact_share(importances, families),
        "warnings": [] if warning is None else [warning],
        "signals_used": [] if params.signals is None else list(params.signals.names),
        "signal_health": None if health is None else health.to_dict(),
    }


def apply_calibrator(calibrator: Calibrator, scores: Sequence[float]) -> NDArray[np.float64]:
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


def class_counts(labels: Sequence[int]) -> dict[str, int]:
    fake = sum(labels)
    return {"real": len(labels) - fake, "fake": fake}


def select_models(
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
        per_class = class_counts([j.label for j in complete])
        if min(per_class.values()) >= min_per_class:
            return models, complete, skipped
        weakest = min(models, key=lambda m: (min(counts[m]), m))
        skipped[weakest] = "too few jobs scored by it together with every other model"
        models.remove(weakest)
    return [], [], skipped
