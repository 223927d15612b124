import numpy as np
import pytest
from numpy.typing import NDArray
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss, roc_auc_score, roc_curve

from core.scoring.metrics import (
    ReliabilityBin,
    brier,
    ece,
    operating_point,
    reliability_bins,
    roc_auc,
    roc_points,
    summary,
    tpr_at_fpr,
    uncertain_rate,
)


def _data(seed: int, n: int, ties: bool) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0.0, 1.0)
    if ties:
        p = np.round(p, 1)  # heavy ties, and values exactly on the bin edges
    return y, p


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_auc_matches_sklearn(seed: int, ties: bool) -> None:
    y, p = _data(seed, 300, ties)
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
def test_roc_points_and_tpr_at_fpr_match_sklearn(seed: int, ties: bool) -> None:
    y, p = _data(seed, 400, ties)
    fpr, tpr, thr = roc_points(y, p)
    sk_fpr, sk_tpr, sk_thr = roc_curve(y, p, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_allclose(thr[1:], sk_thr[1:])
    for target in (0.0, 0.01, 0.05, 0.1, 0.5, 1.0):
        assert tpr_at_fpr(y, p, target) == pytest.approx(sk_tpr[sk_fpr <= target].max())


def test_perfect_and_inverted_scores() -> None:
    y = np.array([0, 0, 1, 1])
    assert roc_auc(y, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc(y, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert roc_auc(y, [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert tpr_at_fpr(y, [0.1, 0.2, 0.8, 0.9], 0.0) == 1.0


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("n_bins", [5, 10, 15])
def test_reliability_bins_and_ece_match_calibration_curve(seed: int, ties: bool, n_bins: int) -> None:
    y, p = _data(seed, 500, ties)
    bins = reliability_bins(y, p, n_bins)
    assert sum(b.count for b in bins) == len(y)
    full = [b for b in bins if b.count]
    fractions = [b.fraction_fake for b in full if b.fraction_fake is not None]
    predicted = [b.mean_predicted for b in full if b.mean_predicted is not None]
    assert len(fractions) == len(predicted) == len(full), "only an empty bin has no means"
    frac, mean = calibration_curve(y, p, n_bins=n_bins, strategy="uniform")
    np.testing.assert_allclose(fractions, frac)
    np.testing.assert_allclose(predicted, mean)
    expected = sum(b.count / len(y) * abs(f - m) for b, f, m in zip(full, fractions, predicted, strict=True))
    assert ece(y, p, n_bins) == pytest.approx(expected, abs=1e-12)
    assert all(ReliabilityBin.from_dict(b.to_dict()) == b for b in bins)


def test_ece_of_a_calibrated_and_a_miscalibrated_predictor() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 200_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    assert ece(y, p) < 0.01
    assert ece(y, p**3) > 0.15
    assert ece([0, 1], [0.0, 1.0]) == 0.0 and ece([1, 0], [0.0, 1.0]) == 1.0


@pytest.mark.parametrize("seed", range(3))
def test_brier_matches_sklearn(seed: int) -> None:
    y, p = _data(seed, 300, False)
    assert brier(y, p) == pytest.approx(brier_score_loss(y, p), abs=1e-15)


def test_uncertain_rate_and_operating_point() -> None:
    s = np.array([0.1, 0.3, 0.3, 0.5, 0.7, 0.7, 0.9, 0.95])
    y = np.array([0, 0, 1, 0, 1, 0, 1, 1])
    assert uncertain_rate(s, 0.3, 0.7) == 5 / 8  # both ends are UNCERTAIN, as decide() says
    point = operating_point(y, s, 0.3, 0.7)
    assert point.tpr == 2 / 4 and point.fpr == 0 / 4 and point.fnr == 0 / 4
    assert operating_point(y, s, 0.2, 0.6).fpr == 1 / 4


def test_summary_is_json_safe_and_complete() -> None:
    y, p = _data(0, 200, False)
    out = summary(y, p, 0.4, 0.6, target_fpr=0.05)
    assert set(out) >= {"auc", "tpr_at_target_fpr", "ece", "brier", "uncertain_rate", "tpr", "fpr", "n"}
    assert all(isinstance(v, int | float) for v in out.values())


@pytest.mark.parametrize(
    ("labels", "scores"),
    [([], []), ([0, 1], [0.5]), ([0, 2], [0.1, 0.2]), ([0, 1], [0.1, float("nan")])],
)
def test_bad_input_is_refused(labels: list[int], scores: list[float]) -> None:
    with pytest.raises(ValueError):
        roc_auc(labels, scores)


def test_one_class_and_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([1, 1], [0.2, 0.3])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ece([0, 1], [0.2, 1.3])
