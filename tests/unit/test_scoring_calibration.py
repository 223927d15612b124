import json
import math

import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from core.scoring.calibration import (
    Calibrator,
    IdentityCalibrator,
    IsotonicCalibrator,
    PlattCalibrator,
    calibrator_from_dict,
    fit_isotonic,
    fit_platt,
)


def _labelled(seed: int, n: int, ties: bool) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    scores = np.clip(rng.normal(0.35 + 0.3 * labels, 0.2), 0.0, 1.0)
    if ties:
        scores = np.round(scores, 2)
    return scores, labels


def test_identity() -> None:
    assert IdentityCalibrator().apply(0.37) == 0.37


def test_isotonic_apply_interpolates_and_clips() -> None:
    cal = IsotonicCalibrator(x=(0.2, 0.6), y=(0.1, 0.9))
    assert cal.apply(0.4) == pytest.approx(0.5, abs=1e-15)
    assert cal.apply(0.0) == 0.1
    assert cal.apply(1.0) == 0.9
    assert IsotonicCalibrator(x=(0.5,), y=(0.3,)).apply(0.9) == 0.3


@pytest.mark.parametrize(
    ("x", "y"),
    [
        ((), ()),
        ((0.1, 0.2), (0.5,)),
        ((0.2, 0.1), (0.1, 0.2)),
        ((0.1, 0.1), (0.1, 0.2)),
        ((0.1, 0.2), (0.6, 0.5)),
        ((0.1, 0.2), (0.5, 1.5)),
        ((0.1, float("nan")), (0.1, 0.2)),
    ],
)
def test_isotonic_rejects_bad_knots(x: tuple[float, ...], y: tuple[float, ...]) -> None:
    with pytest.raises(ValueError):
        IsotonicCalibrator(x=x, y=y)


def test_platt_sign_convention_and_no_overflow() -> None:
    # p = 1 / (1 + exp(a s + b)): a < 0 means P(fake) rises with the score.
    cal = PlattCalibrator(a=-10.0, b=5.0)
    assert cal.apply(0.5) == 0.5
    assert cal.apply(1.0) == pytest.approx(1 / (1 + math.exp(-5)), abs=1e-15)
    assert cal.apply(0.0) == pytest.approx(1 / (1 + math.exp(5)), abs=1e-15)
    assert PlattCalibrator(a=1000.0, b=0.0).apply(1000.0) == 0.0
    assert PlattCalibrator(a=-1000.0, b=0.0).apply(1000.0) == 1.0
    with pytest.raises(ValueError):
        PlattCalibrator(a=float("inf"), b=0.0)


@pytest.mark.parametrize(
    "cal",
    [IdentityCalibrator(), IsotonicCalibrator(x=(0.1, 0.5, 0.9), y=(0.0, 0.25, 1.0)), PlattCalibrator(-4.5, 2.25)],
)
def test_json_round_trip(cal: Calibrator) -> None:
    restored = calibrator_from_dict(json.loads(json.dumps(cal.to_dict())))
    assert restored == cal
    assert restored.apply(0.3) == cal.apply(0.3)


def test_from_dict_rejects_unknown_kind() -> None:
    with pytest.raises(ValueError, match="unknown calibrator kind"):
        calibrator_from_dict({"kind": "beta"})


def test_fit_isotonic_hand_computed() -> None:
    # Labels 0, 1, 0, 1: the middle pair violates order and pools to 0.5.
    cal = fit_isotonic([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1])
    assert cal == IsotonicCalibrator(x=(0.1, 0.2, 0.3, 0.4), y=(0.0, 0.5, 0.5, 1.0))


def test_fit_isotonic_merges_tied_scores_and_trims_flat_runs() -> None:
    # Ties at 0.5 average to 0.5; the flat 1.0 run keeps only its ends.
    cal = fit_isotonic([0.5, 0.5, 0.1, 0.7, 0.8, 0.9], [1, 0, 0, 1, 1, 1])
    assert cal == IsotonicCalibrator(x=(0.1, 0.5, 0.7, 0.9), y=(0.0, 0.5, 1.0, 1.0))


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("ties", [False, True])
def test_fit_isotonic_matches_sklearn(seed: int, ties: bool) -> None:
    scores, labels = _labelled(seed, 40 + 37 * seed, ties)
    ours = fit_isotonic(scores, labels)
    ref = IsotonicRegression(out_of_bounds="clip").fit(scores, labels)
    grid = np.concatenate([np.linspace(-0.5, 1.5, 401), scores])
    np.testing.assert_allclose([ours.apply(v) for v in grid], ref.predict(grid), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ours.x, ref.X_thresholds_, rtol=0, atol=1e-12)
    np.testing.assert_allclose(ours.y, ref.y_thresholds_, rtol=0, atol=1e-9)


def _sklearn_platt(scores: NDArray[np.float64], labels: NDArray[np.int64]) -> tuple[float, float]:
    """Platt's fit as a scikit-learn logistic regression: each score appears once as a fake with
    weight t and once as a real with weight 1 - t (Platt's smoothed targets); C large = no penalty."""
    n_fake = labels.sum()
    n_real = labels.size - n_fake
    t = np.where(labels == 1, (n_fake + 1) / (n_fake + 2), 1 / (n_real + 2))
    x = np.concatenate([scores, scores])[:, None]
    y = np.concatenate([np.ones_like(labels), np.zeros_like(labels)])
    lr = LogisticRegression(C=1e12, solver="newton-cg", tol=1e-12, max_iter=10_000)
    lr.fit(x, y, sample_weight=np.concatenate([t, 1 - t]))
    return -float(lr.coef_[0, 0]), -float(lr.intercept_[0])


@pytest.mark.parametrize("seed", range(8))
def test_fit_platt_matches_sklearn_logistic_regression(seed: int) -> None:
    scores, labels = _labelled(100 + seed, 20 + 30 * seed, ties=False)
    ours = fit_platt(scores, labels)
    a, b = _sklearn_platt(scores, labels)
    assert ours.a == pytest.approx(a, rel=1e-6)
    assert ours.b == pytest.approx(b, rel=1e-6)
    assert ours.a < 0  # scores rise with P(fake) in this data


def test_fit_platt_separable_small_sample_stays_finite() -> None:
    scores = np.array([0.1, 0.2, 0.8, 0.9])
    labels = np.array([0, 0, 1, 1])
    ours = fit_platt(scores, labels)
    a, b = _sklearn_platt(scores, labels)
    assert ours.a == pytest.approx(a, rel=1e-6)
    assert ours.b == pytest.approx(b, rel=1e-6)
    # The smoothed targets are 1/4 and 3/4, and the fit lands exactly on them for separable data
    # symmetric about 0.5: p(0.5) = 0.5 with a finite slope.
    assert ours.apply(0.5) == pytest.approx(0.5, abs=1e-9)


def test_fit_platt_constant_scores_predict_mean_target() -> None:
    # 3 fakes -> target 4/5, 1 real -> target 1/3; only the mean target is identifiable.
    cal = fit_platt([0.5] * 4, [1, 1, 1, 0])
    assert cal.apply(0.5) == pytest.approx((3 * 0.8 + 1 / 3) / 4, abs=1e-9)


@pytest.mark.parametrize("fit", [fit_isotonic, fit_platt])
@pytest.mark.parametrize(
    ("scores", "labels"),
    [([], []), ([0.1, 0.2], [1]), ([0.1, 0.2], [0, 2]), ([0.1, float("nan")], [0, 1])],
)
def test_fit_rejects_bad_input(fit: object, scores: list[float], labels: list[int]) -> None:
    assert callable(fit)
    with pytest.raises(ValueError):
        fit(scores, labels)
