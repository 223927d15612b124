import pytest

from core.scoring.decision import decide
from core.scoring.fusion import noisy_or
from core.vocabulary import Verdict

T_LOW = 0.996700
T_HIGH = 0.998248


def test_seed_worked_example_four_models_at_0_9_is_fake() -> None:
    fused = noisy_or({"m1": 0.90, "m2": 0.90, "m3": 0.90, "m4": 0.90})
    assert fused == pytest.approx(0.9999, abs=1e-12)
    assert decide(fused, T_LOW, T_HIGH) is Verdict.FAKE


@pytest.mark.parametrize(
    ("score", "verdict"),
    [
        (0.5, Verdict.REAL),
        (0.996699, Verdict.REAL),
        (T_LOW, Verdict.UNCERTAIN),
        (0.9975, Verdict.UNCERTAIN),
        (T_HIGH, Verdict.UNCERTAIN),
        (0.998249, Verdict.FAKE),
        (1.0, Verdict.FAKE),
    ],
)
def test_three_way_bands(score: float, verdict: Verdict) -> None:
    assert decide(score, T_LOW, T_HIGH) is verdict


def test_single_threshold_weighted_average() -> None:
    assert decide(0.51, 0.5, 0.5) is Verdict.FAKE
    assert decide(0.49, 0.5, 0.5) is Verdict.REAL
    assert decide(0.5, 0.5, 0.5) is Verdict.UNCERTAIN


def test_verdict_is_a_json_friendly_string() -> None:
    assert Verdict.FAKE == "FAKE"
    assert Verdict("NO_FACE") is Verdict.NO_FACE


@pytest.mark.parametrize(
    ("score", "t_low", "t_high"), [(0.5, 0.6, 0.4), (float("nan"), 0.4, 0.6), (0.5, 0.4, float("inf"))]
)
def test_bad_arguments(score: float, t_low: float, t_high: float) -> None:
    with pytest.raises(ValueError):
        decide(score, t_low, t_high)
