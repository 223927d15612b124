import json
import math

import numpy as np
import pytest
from sklearn.calibration import CalibratedClassifierCV
from sklearn.linear_model import LogisticRegression

from core.scoring.calibration import PlattCalibrator
from core.scoring.fusion import (
    NotEnoughModels,
    StackerParams,
    fit_stacker,
    fuse,
    noisy_or,
    stacker,
    weighted_average,
)

EQUAL = {"xception": 0.25, "efficientnet_b4": 0.25, "f3net": 0.25, "effort_clip": 0.25}


def test_weighted_average_seed_equal_weights() -> None:
    probs = {"xception": 0.2, "efficientnet_b4": 0.4, "f3net": 0.6, "effort_clip": 0.9}
    assert weighted_average(probs, EQUAL, 2) == pytest.approx(2.1 / 4, abs=1e-15)


def test_weighted_average_uneven_weights() -> None:
    assert weighted_average({"a": 0.2, "b": 0.6}, {"a": 1.0, "b": 3.0}, 1) == pytest.approx(0.5, abs=1e-15)


def test_weighted_average_renormalises_over_working_models() -> None:
    # effort_clip failed: the other three share its weight.
    probs = {"xception": 0.3, "efficientnet_b4": 0.6, "f3net": 0.9}
    assert weighted_average(probs, EQUAL, 2) == pytest.approx(0.6, abs=1e-15)


def test_weighted_average_needs_min_models() -> None:
    with pytest.raises(NotEnoughModels, match="1 working model"):
        weighted_average({"xception": 0.9}, EQUAL, 2)


@pytest.mark.parametrize(
    "weights",
    [{"a": 1.0}, {"a": 1.0, "b": -1.0}, {"a": 0.0, "b": 0.0}, {"a": 1.0, "b": float("nan")}],
)
def test_weighted_average_rejects_bad_weights(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        weighted_average({"a": 0.5, "b": 0.5}, weights, 1)


def test_noisy_or_hand_computed() -> None:
    assert noisy_or({"a": 0.9, "b": 0.9, "c": 0.9, "d": 0.9}) == pytest.approx(0.9999, abs=1e-12)
    assert noisy_or({"a": 0.5, "b": 0.5}) == 0.75
    assert noisy_or({"a": 0.2, "b": 0.5}) == pytest.approx(0.6, abs=1e-15)
    assert noisy_or({"a": 0.0}) == 0.0
    assert noisy_or({"a": 1.0, "b": 0.3}) == 1.0


def test_noisy_or_rejects_empty_and_non_probabilities() -> None:
    with pytest.raises(ValueError):
        noisy_or({})
    with pytest.raises(ValueError, match="'a'"):
        noisy_or({"a": 1.2})


PARAMS = StackerParams(coef={"a": 2.0, "b": -1.0}, intercept=-0.5, calibration=None)


def test_stacker_hand_computed() -> None:
    # z = -0.5 + 2 * 0.8 - 1 * 0.3 = 0.8
    assert stacker({"a": 0.8, "b": 0.3}, PARAMS) == pytest.approx(1 / (1 + math.exp(-0.8)), abs=1e-15)
    calibrated = StackerParams(coef=PARAMS.coef, intercept=-0.5, calibration=PlattCalibrator(a=-2.0, b=1.0))
    # Platt on the logit: 1 / (1 + exp(-2 * 0.8 + 1))
    assert stacker({"a": 0.8, "b": 0.3}, calibrated) == pytest.approx(1 / (1 + math.exp(-0.6)), abs=1e-15)


def test_stacker_missing_model_is_not_enough_models_and_extra_is_ignored() -> None:
    with pytest.raises(NotEnoughModels, match=r"missing \['b'\]"):
        stacker({"a": 0.8}, PARAMS)
    assert stacker({"a": 0.8, "b": 0.3, "new_model": 1.0}, PARAMS) == stacker({"a": 0.8, "b": 0.3}, PARAMS)


def test_stacker_params_json_round_trip() -> None:
    for params in (PARAMS, StackerParams(coef={"a": 1.5}, intercept=0.1, calibration=PlattCalibrator(-1.0, 0.2))):
        assert StackerParams.from_dict(json.loads(json.dumps(params.to_dict()))) == params
    with pytest.raises(ValueError, match="platt"):
        StackerParams.from_dict({"coef": {}, "intercept": 0.0, "calibration": {"kind": "identity"}})


def _ensemble_scores(seed: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    # Four detectors of different strength, P(fake) in (0, 1).
    strength = np.array([1.5, 0.8, 1.0, 0.3])
    logits = rng.normal(0.0, 1.0, (n, 4)) + np.outer(2 * y - 1, strength)
    return 1 / (1 + np.exp(-logits)), y


@pytest.mark.parametrize("seed", range(5))
def test_fit_stacker_matches_sklearn_calibrated_classifier(seed: int) -> None:
    names = ["xception", "efficientnet_b4", "f3net", "effort_clip"]
    X, y = _ensemble_scores(seed, 60 + 50 * seed)
    params = fit_stacker(X, y, names)

    ref = CalibratedClassifierCV(LogisticRegression(max_iter=1000), method="sigmoid", cv=3, ensemble=False)
    ref.fit(X, y)
    X_new, _ = _ensemble_scores(1000 + seed, 200)
    ours = [stacker(dict(zip(names, row, strict=True)), params) for row in X_new]
    np.testing.assert_allclose(ours, ref.predict_proba(X_new)[:, 1], rtol=0, atol=1e-6)

    lr = LogisticRegression(max_iter=1000).fit(X, y)
    assert list(params.coef.values()) == pytest.approx(list(lr.coef_[0]), abs=1e-12)
    assert params.intercept == pytest.approx(lr.intercept_[0], abs=1e-12)


def test_fit_stacker_rejects_bad_shapes() -> None:
    X, y = _ensemble_scores(0, 30)
    with pytest.raises(ValueError):
        fit_stacker(X, y, ["a", "b", "c"])
    with pytest.raises(ValueError):
        fit_stacker(X, y[:-1], ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="duplicate"):
        fit_stacker(X, y, ["a", "b", "c", "c"])


def test_fuse_dispatches_and_enforces_min_models() -> None:
    probs = {"a": 0.8, "b": 0.3}
    weights = {"a": 1.0, "b": 1.0}
    assert fuse("weighted_average", probs, weights, {}, 2) == pytest.approx(0.55, abs=1e-15)
    assert fuse("noisy_or", probs, weights, {}, 2) == pytest.approx(1 - 0.2 * 0.7, abs=1e-15)
    assert fuse("stacker", probs, weights, PARAMS.to_dict(), 2) == stacker(probs, PARAMS)
    for method in ("weighted_average", "noisy_or", "stacker"):
        with pytest.raises(NotEnoughModels):
            fuse(method, probs, weights, PARAMS.to_dict(), 3)
    with pytest.raises(ValueError, match="unknown fusion method"):
        fuse("median", probs, weights, {}, 1)
