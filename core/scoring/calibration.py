"""Per-model score calibration: identity, isotonic (stored as knots) and Platt scaling.

The calibrators are plain frozen values with a JSON form, so a calibration version can be stored
in Postgres and applied without scikit-learn. The fit functions are our own numpy code (tested
against scikit-learn) so that a refit gives the same knots everywhere.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

ArrayLike = Sequence[float] | NDArray[np.floating] | NDArray[np.integer]


@dataclass(frozen=True)
class IdentityCalibrator:
    """No calibration: what a model has until a calibration version fits one for it."""

    def apply(self, score: float) -> float:
        return float(score)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "identity"}


@dataclass(frozen=True)
class IsotonicCalibrator:
    """A non-decreasing piecewise-linear map through the knots (x, y), constant outside them.

    Linear interpolation between knots and clipping outside them is exactly what scikit-learn's
    ``IsotonicRegression(out_of_bounds="clip")`` predicts.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=np.float64)
        y = np.asarray(self.y, dtype=np.float64)
        if x.size == 0 or x.shape != y.shape:
            raise ValueError(f"isotonic knots need equal, non-zero lengths, got {x.size} and {y.size}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
            raise ValueError("isotonic knots must be finite")
        if np.any(np.diff(x) <= 0):
            raise ValueError("isotonic knot x values must be strictly increasing")
        if np.any(np.diff(y) < 0) or y[0] < 0 or y[-1] > 1:
            raise ValueError("isotonic knot y values must be non-decreasing probabilities in [0, 1]")

    def apply(self, score: float) -> float:
        return float(np.interp(score, self.x, self.y))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "isotonic", "x": list(self.x), "y": list(self.y)}


@dataclass(frozen=True)
class PlattCalibrator:
    """p = 1 / (1 + exp(a * s + b)).

    Sign convention: Platt's (1999) and scikit-learn's ``_SigmoidCalibration``, so a score that
    rises with P(fake) has a < 0. In logistic-regression terms p = sigmoid(w * s + c) with w = -a,
    c = -b. The input is not clipped: the stacker feeds it a logit.
    """

    a: float
    b: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.a) and math.isfinite(self.b)):
            raise ValueError(f"Platt parameters must be finite, got a={self.a}, b={self.b}")

    def apply(self, score: float) -> float:
        return expit(-(self.a * score + self.b))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "platt", "a": self.a, "b": self.b}


Calibrator = IdentityCalibrator | IsotonicCalibrator | PlattCalibrator


def calibrator_from_dict(data: Mapping[str, Any]) -> Calibrator:
    """Inverse of ``to_dict``; ValueError on an unknown kind or bad fields."""
    kind = data.get("kind")
    if kind == "identity":
        return IdentityCalibrator()
    if kind == "isotonic":
        return IsotonicCalibrator(x=tuple(float(v) for v in data["x"]), y=tuple(float(v) for v in data["y"]))
    if kind == "platt":
        return PlattCalibrator(a=float(data["a"]), b=float(data["b"]))
    raise ValueError(f"unknown calibrator kind {kind!r}; expected 'identity', 'isotonic' or 'platt'")


def expit(z: float) -> float:
    """The logistic sigmoid 1 / (1 + exp(-z))."""
    # Two branches so exp() only ever sees a non-positive argument and cannot overflow.
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


def _checked_xy(scores: ArrayLike, labels: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    s = np.asarray(scores, dtype=np.float64)
    t = np.asarray(labels, dtype=np.float64)
    if s.ndim != 1 or s.shape != t.shape:
        raise ValueError(f"scores and labels must be 1-D of equal length, got {s.shape} and {t.shape}")
    if s.size == 0:
        raise ValueError("cannot fit a calibrator on no labelled scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite")
    if not np.all((t == 0) | (t == 1)):
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    return s, t


def fit_isotonic(scores: ArrayLike, labels: ArrayLike) -> IsotonicCalibrator:
    """Increasing isotonic regression of labels on scores (pool-adjacent-violators), as knots.

    Same steps as scikit-learn: tied scores are merged into one weighted point, PAVA pools
    neighbouring blocks that decrease, and interior knots on a flat run are dropped (interpolation
    through them changes nothing).
    """
    s, t = _checked_xy(scores, labels)
    xs, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=t)

    # Each block: (label sum, weight, number of unique x it covers). Merging on a violation keeps
    # block means non-decreasing left to right.
    block_sum: list[float] = []
    block_weight: list[float] = []
    block_len: list[int] = []
    for total, weight in zip(sums.tolist(), counts.tolist(), strict=True):
        block_sum.append(total)
        block_weight.append(weight)
        block_len.append(1)
        while len(block_sum) > 1 and block_sum[-2] * block_weight[-1] > block_sum[-1] * block_weight[-2]:
            total_last, weight_last, len_last = block_sum.pop(), block_weight.pop(), block_len.pop()
            block_sum[-1] += total_last
            block_weight[-1] += weight_last
            block_len[-1] += len_last
    means = np.asarray(block_sum) / np.asarray(block_weight)
    ys = np.repeat(means, block_len)

    keep = np.ones(len(ys), dtype=bool)
    keep[1:-1] = (ys[1:-1] != ys[:-2]) | (ys[1:-1] != ys[2:])
    return IsotonicCalibrator(x=tuple(xs[keep].tolist()), y=tuple(ys[keep].tolist()))


def fit_platt(scores: ArrayLike, labels: ArrayLike) -> PlattCalibrator:
    """Platt scaling: unregularised logistic regression of labels on the score, by Newton's method.

    Platt's smoothed targets are used ((N+ + 1) / (N+ + 2) for fakes, 1 / (N- + 2) for reals, as
    scikit-learn's sigmoid calibration does): with the few labels Platt is the fallback for, the
    classes are often separable and plain maximum likelihood would run off to infinite slope.
    """
    s, labels_ = _checked_xy(scores, labels)
    n_fake = float(labels_.sum())
    n_real = float(labels_.size) - n_fake
    t = np.where(labels_ == 1, (n_fake + 1.0) / (n_fake + 2.0), 1.0 / (n_real + 2.0))

    design = np.column_stack([s, np.ones_like(s)])
    theta = np.array([0.0, math.log(t.mean() / (1.0 - t.mean()))])

    def loss(th: NDArray[np.float64]) -> float:
        z = design @ th
        # -[t log p + (1 - t) log(1 - p)] with p = sigmoid(z), written without overflow.
        return float(np.sum(np.logaddexp(0.0, z) - t * z))

    current = loss(theta)
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (design @ theta)))
        grad = design.T @ (p - t)
        hess = design.T @ (design * (p * (1.0 - p))[:, None])
        # lstsq: with all scores equal the Hessian is singular and any slope fits; take the smallest.
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        # Halve the step until the loss stops rising; none found means we sit at the optimum
        # up to rounding.
        size = 1.0
        while size > 1e-10 and loss(theta - size * step) > current:
            size *= 0.5
        if size <= 1e-10:
            break
        theta = theta - size * step
        current = loss(theta)
        if np.max(np.abs(size * step)) < 1e-13:
            break
    # Logistic regression gives p = sigmoid(w s + c); Platt's convention is a = -w, b = -c.
    return PlattCalibrator(a=float(-theta[0]), b=float(-theta[1]))
