import math

import numpy as np
import pytest

from core.scoring.aggregation import aggregate, parse_aggregator

FRAMES = [0.1, 0.9, 0.4, 0.8, 0.2, 0.7]


def test_mean_and_max() -> None:
    assert aggregate(FRAMES, "mean") == pytest.approx(3.1 / 6, abs=1e-15)
    assert aggregate(FRAMES, "max") == 0.9


def test_topk_is_mean_of_k_highest() -> None:
    assert aggregate(FRAMES, "topk:4") == pytest.approx((0.9 + 0.8 + 0.7 + 0.4) / 4, abs=1e-15)
    assert aggregate(FRAMES, "topk:1") == 0.9


def test_topk_with_fewer_frames_than_k_is_mean_of_all() -> None:
    assert aggregate([0.2, 0.6], "topk:4") == pytest.approx(0.4, abs=1e-15)
    assert aggregate(FRAMES, "topk:6") == pytest.approx(3.1 / 6, abs=1e-15)


def test_softmax_hand_computed() -> None:
    # Two frames 0 and 1 with beta 5: weights 1 and e^5.
    assert aggregate([0.0, 1.0], "softmax:5") == pytest.approx(math.exp(5) / (1 + math.exp(5)), abs=1e-15)
    assert aggregate([0.0, 1.0], "softmax:5") == pytest.approx(0.9933071490757153, abs=1e-12)
    # Three frames, beta 5: weights e^1, e^3, e^5.
    w = [math.exp(1), math.exp(3), math.exp(5)]
    expected = (w[0] * 0.2 + w[1] * 0.6 + w[2] * 1.0) / sum(w)
    assert aggregate([0.2, 0.6, 1.0], "softmax:5") == pytest.approx(expected, abs=1e-15)


def test_softmax_zero_beta_is_mean_and_large_beta_does_not_overflow() -> None:
    assert aggregate(FRAMES, "softmax:0") == pytest.approx(3.1 / 6, abs=1e-15)
    assert aggregate(FRAMES, "softmax:10000") == pytest.approx(0.9, abs=1e-12)


def test_confident_mostly_fake_takes_mean_of_confident_fakes() -> None:
    # 27 frames, 12 above 0.8: 12 > 27 / 2.5 = 10.8 and 12 > 11.
    assert aggregate([0.9] * 12 + [0.5] * 15, "confident") == pytest.approx(0.9, abs=1e-15)
    # 40 frames, 17 above 0.8: 17 > 16 and > 11.
    assert aggregate([0.95] * 17 + [0.1] * 23, "confident") == pytest.approx(0.95, abs=1e-15)


def test_confident_needs_more_than_eleven_fakes() -> None:
    # 11 fakes is not > 11: falls through to the plain mean (no frame is below 0.2).
    assert aggregate([0.9] * 11 + [0.5] * 16, "confident") == pytest.approx(17.9 / 27, abs=1e-15)


def test_confident_needs_more_than_n_over_2_5_fakes() -> None:
    # 40 frames, 15 fakes: 15 is not > 16; 25 reals is not > 36 -> mean.
    assert aggregate([0.95] * 15 + [0.1] * 25, "confident") == pytest.approx(16.75 / 40, abs=1e-15)


def test_confident_mostly_real_takes_mean_of_confident_reals() -> None:
    # 20 frames, 19 below 0.2: 19 > 0.9 * 20 = 18.
    assert aggregate([0.1] * 19 + [0.5], "confident") == pytest.approx(0.1, abs=1e-15)
    # 18 is not > 18 -> mean.
    assert aggregate([0.1] * 18 + [0.5] * 2, "confident") == pytest.approx(0.14, abs=1e-15)


def _dfdc_confident_strategy(pred: list[float], t: float = 0.8) -> float:
    """selimsef/dfdc_deepfake_challenge kernel_utils.confident_strategy, as published."""
    a = np.array(pred)
    sz = len(a)
    fakes = np.count_nonzero(a > t)
    if fakes > sz // 2.5 and fakes > 11:
        return float(np.mean(a[a > t]))
    elif np.count_nonzero(a < 0.2) > 0.9 * sz:
        return float(np.mean(a[a < 0.2]))
    else:
        return float(np.mean(a))


def test_confident_matches_dfdc_winner_on_random_tracks() -> None:
    rng = np.random.default_rng(7)
    for _ in range(500):
        n = int(rng.integers(1, 80))
        kind = rng.integers(3)
        if kind == 0:
            frames = rng.uniform(0.7, 1.0, n)
        elif kind == 1:
            frames = rng.uniform(0.0, 0.25, n)
        else:
            frames = rng.uniform(0.0, 1.0, n)
        assert aggregate(frames, "confident") == _dfdc_confident_strategy(list(frames))


def test_numpy_input_and_callable_reuse() -> None:
    fn = parse_aggregator("topk:2")
    assert fn(np.array([0.3, 0.5, 0.1], dtype=np.float32)) == pytest.approx(0.4, abs=1e-7)
    assert fn([1.0]) == 1.0


@pytest.mark.parametrize(
    "bad",
    [[], [0.5, float("nan")], [0.5, 1.5], [-0.1], [[0.1, 0.2]]],
)
def test_bad_scores_raise(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        aggregate(bad, "mean")


def test_empty_message_is_clear() -> None:
    with pytest.raises(ValueError, match="empty"):
        aggregate([], "max")


@pytest.mark.parametrize(
    "spec",
    [
        "",
        "median",
        "mean:3",
        "topk",
        "topk:",
        "topk:0",
        "topk:2.5",
        "topk:x",
        "softmax:-1",
        "softmax:inf",
        "softmax:nan",
        "softmax:b5",
        "topk4",
        "confident:1",
    ],
)
def test_bad_spec_raises_with_valid_forms(spec: str) -> None:
    with pytest.raises(ValueError, match="topk:K"):
        parse_aggregator(spec)
