"""Evaluation metrics for labelled scores: ROC AUC, TPR at a target FPR, ECE, Brier, the uncertain rate,
the operating point of a three-way decision and the bins of a reliability diagram.

Pure numpy (no scikit-learn at run time); the tests check each one against scikit-learn where it has it.
Labels are 1 = FAKE (positive), 0 = REAL.
"""

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

ArrayLike = Sequence[float] | Sequence[int] | NDArray[np.floating] | NDArray[np.integer] | NDArray[np.bool_]
Float64s = NDArray[np.float64]


def _labels_scores(labels: ArrayLike, scores: ArrayLike) -> tuple[Float64s, Float64s]:
    y = np.asarray(labels, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    if y.ndim != 1 or y.shape != s.shape:
        raise ValueError(f"labels and scores must be 1-D of equal length, got {y.shape} and {s.shape}")
    if y.size == 0:
        raise ValueError("no labelled scores to evaluate")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    return y, s


def _probabilities(labels: ArrayLike, probs: ArrayLike) -> tuple[Float64s, Float64s]:
    y, p = _labels_scores(labels, probs)
    if np.any(p < 0.0) or np.any(p > 1.0):
        raise ValueError("probabilities must be in [0, 1]")
    return y, p


def _both_classes(y: Float64s) -> tuple[int, int]:
    n_pos = int(y.sum())
    n_neg = int(y.size) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"need both classes, got {n_pos} fake and {n_neg} real")
    return n_pos, n_neg


def roc_auc(labels: ArrayLike, scores: ArrayLike) -> float:
    """Area under the ROC curve: P(a random fake outscores a random real), ties counting one half.

    Mann-Whitney U from mid-ranks, which equals the trapezoidal area scikit-learn's roc_auc_score computes.
    """
    y, s = _labels_scores(labels, scores)
    n_pos, n_neg = _both_classes(y)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    # The mid-rank (1-based) of each group of tied scores.
    ends = np.cumsum(counts)
    mid_ranks = ends - (counts - 1) / 2.0
    rank_sum = float(mid_ranks[inverse][y == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def roc_points(labels: ArrayLike, scores: ArrayLike) -> tuple[Float64s, Float64s, Float64s]:
    """Every ROC point (fpr, tpr, threshold), "fake if score >= threshold", from (0, 0) at +inf down.

    Like scikit-learn's ``roc_curve(..., drop_intermediate=False)``.
    """
    y, s = _labels_scores(labels, scores)
    n_pos, n_neg = _both_classes(y)
    order = np.argsort(-s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    # The last index of each run of equal scores: a threshold admits a whole tie group at once.
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    fpr = np.r_[0.0, fp / n_neg]
    tpr = np.r_[0.0, tp / n_pos]
    thresholds = np.r_[np.inf, s_sorted[last]]
    return fpr, tpr, thresholds


def tpr_at_fpr(labels: ArrayLike, scores: ArrayLike, max_fpr: float = 0.05) -> float:
    """The best TPR of any single threshold whose FPR is at most ``max_fpr`` (threshold-free summary)."""
    if not 0.0 <= max_fpr <= 1.0:
        raise ValueError(f"max_fpr must be in [0, 1], got {max_fpr}")
    fpr, tpr, _ = roc_points(labels, scores)
    return float(tpr[fpr <= max_fpr + 1e-12].max())


def _bin_ids(p: Float64s, n_bins: int) -> NDArray[np.intp]:
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Same assignment as scikit-learn's calibration_curve(strategy="uniform"): bins are (lo, hi],
    # the first one [0, hi].
    return np.searchsorted(edges[1:-1], p)


def ece(labels: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error over ``n_bins`` equal-width bins: Σ (n_b / n) |mean(p_b) − fraction fake_b|."""
    y, p = _probabilities(labels, probs)
    ids = _bin_ids(p, n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y, minlength=n_bins)
    # |Σ p_b − Σ y_b| / n is (n_b / n) |mean p_b − mean y_b|; empty bins contribute 0.
    return float(np.abs(sum_p - sum_y).sum() / y.size)


def brier(labels: ArrayLike, probs: ArrayLike) -> float:
    """Mean squared error of P(fake) against the 0/1 label."""
    y, p = _probabilities(labels, probs)
    return float(np.mean((p - y) ** 2))


def uncertain_rate(scores: ArrayLike, t_low: float, t_high: float) -> float:
    """Share of scores in the UNCERTAIN band [t_low, t_high] (both ends included, as ``decide`` does)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1 or s.size == 0:
        raise ValueError("need a non-empty 1-D array of scores")
    if not t_low <= t_high:
        raise ValueError(f"need t_low <= t_high, got {t_low}, {t_high}")
    return float(np.mean((s >= t_low) & (s <= t_high)))


@dataclass(frozen=True)
class OperatingPoint:
    """A three-way decision on labelled scores: FAKE above t_high, REAL below t_low, UNCERTAIN between.

    ``tpr``: share of fakes called FAKE; ``fpr``: share of reals called FAKE; ``fnr``: share of fakes
    called REAL; ``uncertain_rate``: share of all scores in the band.
    """

    tpr: float
    fpr: float
    fnr: float
    uncertain_rate: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def operating_point(labels: ArrayLike, scores: ArrayLike, t_low: float, t_high: float) -> OperatingPoint:
    y, s = _labels_scores(labels, scores)
    _both_classes(y)
    fake_called = s > t_high
    real_called = s < t_low
    pos, neg = y == 1, y == 0
    return OperatingPoint(
        tpr=float(fake_called[pos].mean()),
        fpr=float(fake_called[neg].mean()),
        fnr=float(real_called[pos].mean()),
        uncertain_rate=uncertain_rate(s, t_low, t_high),
    )


@dataclass(frozen=True)
class ReliabilityBin:
    """One bin of a reliability diagram; the means are None for an empty bin."""

    lo: float
    hi: float
    count: int
    mean_predicted: float | None
    fraction_fake: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ReliabilityBin":
        def opt(v: Any) -> float | None:
            return None if v is None else float(v)

        return cls(
            lo=float(data["lo"]),
            hi=float(data["hi"]),
            count=int(data["count"]),
            mean_predicted=opt(data["mean_predicted"]),
            fraction_fake=opt(data["fraction_fake"]),
        )


def reliability_bins(labels: ArrayLike, probs: ArrayLike, n_bins: int = 10) -> list[ReliabilityBin]:
    """Equal-width bins of P(fake) with their mean prediction and observed fraction of fakes."""
    y, p = _probabilities(labels, probs)
    ids = _bin_ids(p, n_bins)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    count = np.bincount(ids, minlength=n_bins)
    sum_p = np.bincount(ids, weights=p, minlength=n_bins)
    sum_y = np.bincount(ids, weights=y, minlength=n_bins)
    out = []
    for b in range(n_bins):
        n = int(count[b])
        out.append(
            ReliabilityBin(
                lo=float(edges[b]),
                hi=float(edges[b + 1]),
                count=n,
                mean_predicted=float(sum_p[b] / n) if n else None,
                fraction_fake=float(sum_y[b] / n) if n else None,
            )
        )
    return out


def summary(
    labels: ArrayLike, probs: ArrayLike, t_low: float, t_high: float, target_fpr: float = 0.05, n_bins: int = 10
) -> dict[str, Any]:
    """Every metric the recalibration reports, for one set of fused scores, JSON-safe."""
    y, p = _probabilities(labels, probs)
    n_pos, n_neg = _both_classes(y)
    point = operating_point(y, p, t_low, t_high)
    out: dict[str, Any] = {
        "n": int(y.size),
        "n_fake": n_pos,
        "n_real": n_neg,
        "auc": roc_auc(y, p),
        "tpr_at_target_fpr": tpr_at_fpr(y, p, target_fpr),
        "target_fpr": target_fpr,
        "ece": ece(y, p, n_bins),
        "brier": brier(y, p),
        "t_low": t_low,
        "t_high": t_high,
        **point.to_dict(),
    }
    for key, value in out.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"metric {key} is not finite: {value}")
    return out
