"""Recalibration on generated scores whose structure is known: which model is miscalibrated, which is
reliable, which is wrong most of the time."""

import json
import math
import random

import numpy as np
import pytest
from numpy.typing import NDArray

from core.scoring.calibration import IsotonicCalibrator, PlattCalibrator
from core.scoring.fusion import noisy_or
from core.scoring.recalibration import recalibrate
from core.scoring.recalibration_config import KNOBS, RecalibrationConfig
from core.scoring.recalibration_steps import choose_thresholds, score_jobs, stratified_split
from core.scoring.recalibration_types import LabelledJob, NotEnoughLabels, Recalibration, Setup, VersionSpec
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video

PACK_FUSION = FusionSpec("weighted_average", 0.35, 0.65, 1)
IDENTITY = Setup(None, PACK_FUSION, {})
Fitted = tuple[list[LabelledJob], Recalibration]


def _sigmoid(z: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)


def generate(n: int, seed: int = 0, fake_share: float = 0.4) -> list[LabelledJob]:
    """Three models on the same videos.

    ``squashed``: informative but miscalibrated, P(fake) = sigmoid(2x)³ where sigmoid(2x) is the true posterior.
    ``reliable``: on the right side of 0.5 nearly always. ``contrarian``: on the wrong side nearly always.
    """
    rng = np.random.default_rng(seed)
    y = (rng.uniform(size=n) < fake_share).astype(int)
    sign = 2 * y - 1
    x = rng.normal(sign * 1.0, 1.0)
    squashed = _sigmoid(2 * x) ** 3
    sharp = _sigmoid(4 * rng.normal(sign * 2.0, 0.6))
    contrarian = _sigmoid(4 * rng.normal(-sign * 2.0, 0.6))
    return [
        LabelledJob(
            f"job-{i:06d}",
            int(y[i]),
            {"squashed": float(squashed[i]), "reliable": float(sharp[i]), "contrarian": float(contrarian[i])},
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    jobs = generate(6000)
    return jobs, recalibrate(jobs, IDENTITY, RecalibrationConfig(seed=3))


def test_a_miscalibrated_model_is_corrected_on_held_out_data(fitted: Fitted) -> None:
    _, fit = fitted
    squashed = fit.metrics["per_model"]["squashed"]
    assert squashed["calibrator"] == "isotonic"
    assert isinstance(fit.calibrators["squashed"], IsotonicCalibrator)
    assert squashed["held_out_ece_before"] > 0.1
    assert squashed["held_out_ece_after"] < 0.04
    assert squashed["held_out_ece_after"] < squashed["held_out_ece_before"]
    held = fit.metrics["held_out"]
    assert held["after"]["ece"] < held["before"]["ece"]
    assert held["after"]["brier"] < held["before"]["brier"]
    assert fit.better, fit.metrics["better_reasons"]


def test_feedback_weights_follow_agreement_with_moderators(fitted: Fitted) -> None:
    _, fit = fitted
    assert fit.feedback_weights["reliable"] == pytest.approx(2.2, abs=0.03)
    assert fit.feedback_weights["contrarian"] == pytest.approx(0.3, abs=0.03)
    assert 1.0 < fit.feedback_weights["squashed"] < 2.0  # right about 4 times in 5, at 0.5
    per_model = fit.metrics["per_model"]
    assert fit.reliable_models == {m for m in per_model if per_model[m]["smoothed_accuracy"] >= 0.8}
    assert "reliable" in fit.reliable_models and "contrarian" not in fit.reliable_models


def test_thresholds_hit_the_target_fpr_on_held_out_data(fitted: Fitted) -> None:
    _, fit = fitted
    after = fit.metrics["held_out"]["after"]
    n_real = after["n_real"]
    sampling = 3 * math.sqrt(0.05 * 0.95 / n_real) + 3 * math.sqrt(0.05 * 0.95 / (n_real * 7 / 3))
    assert abs(after["fpr"] - 0.05) <= sampling, (after["fpr"], sampling)
    assert 0.0 <= fit.t_low <= fit.t_high <= 1.0
    assert after["uncertain_rate"] == pytest.approx(0.05, abs=0.03)
    # Every fusion method got its own thresholds, each at the target on held-out data.
    assert set(fit.by_method) == {"weighted_average", "noisy_or", "stacker"}
    for summary in fit.metrics["after_by_method"].values():
        assert abs(summary["fpr"] - 0.05) <= sampling


@pytest.mark.parametrize("method", ["stacker", "noisy_or"])
def test_other_fusion_methods_hit_the_target_too(method: str) -> None:
    jobs = generate(3000, seed=5)
    fit = recalibrate(jobs, IDENTITY, RecalibrationConfig(fusion_method=method, seed=1))
    assert fit.method == method
    after = fit.metrics["held_out"]["after"]
    assert abs(after["fpr"] - 0.05) <= 4 * math.sqrt(0.05 * 0.95 / after["n_real"])
    assert after["auc"] > 0.95


def test_thresholds_on_a_known_set() -> None:
    reals = np.arange(100) / 100.0  # 0.00 .. 0.99
    labels = [0] * 100 + [1] * 100
    scores = np.r_[reals, np.full(100, 0.995)]
    t_low, t_high = choose_thresholds(labels, scores, target_fpr=0.05, uncertain_band=0.1)
    assert t_high == pytest.approx(0.945)  # exactly 5 reals (0.95 .. 0.99) above it
    assert np.sum(reals > t_high) == 5
    assert np.sum((scores >= t_low) & (scores <= t_high)) == 20  # 10% of 200
    assert choose_thresholds(labels, scores, 0.05, 0.0) == (t_high, t_high)


def test_not_enough_labels_says_how_many_are_needed_and_how_many_there_are() -> None:
    jobs = [j for j in generate(400) if j.label == 1][:30] + [j for j in generate(400) if j.label == 0][:9]
    with pytest.raises(NotEnoughLabels) as info:
        recalibrate(jobs, IDENTITY)
    message = str(info.value)
    assert "at least 10 REAL and 10 FAKE" in message and "have 9 REAL and 30 FAKE" in message
    assert info.value.to_dict() == {"needed_per_class": 10, "have_real": 9, "have_fake": 30}
    with pytest.raises(NotEnoughLabels, match="have 0 REAL and 0 FAKE"):
        recalibrate([], IDENTITY)
    only_fakes = [j for j in generate(200) if j.label == 1]
    with pytest.raises(NotEnoughLabels, match=f"have 0 REAL and {len(only_fakes)} FAKE"):
        recalibrate(only_fakes, IDENTITY)
    # Jobs whose scores are all missing do not count.
    empty = [LabelledJob(f"e{i}", i % 2, {}) for i in range(100)]
    with pytest.raises(NotEnoughLabels, match="have 0 REAL and 0 FAKE"):
        recalibrate(empty, IDENTITY)


def test_few_labels_fall_back_to_platt() -> None:
    jobs = generate(70, seed=2, fake_share=0.5)
    fit = recalibrate(jobs, IDENTITY, RecalibrationConfig(min_isotonic_labels=50))
    assert fit.fitted_on["train"]["real"] + fit.fitted_on["train"]["fake"] < 50
    assert all(isinstance(c, PlattCalibrator) for c in fit.calibrators.values())
    assert {m["calibrator"] for m in fit.metrics["per_model"].values()} == {"platt"}


def test_a_model_with_too_few_labels_is_left_out_and_reported() -> None:
    jobs = generate(400, seed=4)
    jobs = [
        LabelledJob(j.job_id, j.label, {**j.scores, "newcomer": 0.5} if i < 12 else dict(j.scores))
        for i, j in enumerate(jobs)
    ]
    fit = recalibrate(jobs, IDENTITY)
    assert "newcomer" not in fit.calibrators and "newcomer" in fit.fitted_on["skipped_models"]
    assert fit.fitted_on["models"] == ["contrarian", "reliable", "squashed"]


def test_the_fit_does_not_depend_on_row_order() -> None:
    jobs = generate(600, seed=7)
    shuffled = list(jobs)
    random.Random(1).shuffle(shuffled)
    a = recalibrate(jobs, IDENTITY).row_columns()
    b = recalibrate(shuffled, IDENTITY).row_columns()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def test_split_is_stratified_and_seeded() -> None:
    ids = [f"j{i:03d}" for i in range(100)]
    labels = [1 if i % 4 == 0 else 0 for i in range(100)]
    train, held = stratified_split(ids, labels, 0.3, seed=0)
    assert sorted(train + held) == list(range(100))
    assert sum(labels[i] for i in held) == 8 and len(held) == 8 + 23  # 7.5 and 22.5 rounded half up
    assert stratified_split(ids, labels, 0.3, seed=0) == (train, held)
    assert stratified_split(ids, labels, 0.3, seed=1) != (train, held)


def test_the_stored_version_round_trips_and_is_json(fitted: Fitted) -> None:
    _, fit = fitted
    columns = fit.row_columns()
    stored = json.loads(json.dumps(columns))  # what a JSON column gives back
    restored = VersionSpec.from_row(
        "v9", stored["calibrators"], stored["feedback_weights"], stored["fusion"], stored["thresholds"]
    )
    assert restored.state == fit.state("v9")
    spec = restored.fusion_spec(PACK_FUSION)
    assert (spec.method, spec.t_low, spec.t_high, spec.min_models) == (fit.method, fit.t_low, fit.t_high, 1)
    stacker = restored.fusion_spec(PACK_FUSION, method="stacker")
    assert stacker.params == fit.stacker.to_dict() and stacker.t_high == fit.by_method["stacker"]["t_high"]


def test_scoring_uses_the_most_fake_track_exactly_as_score_video_does() -> None:
    tracks = [{"a": 0.2, "b": 0.3}, {"a": 0.9, "b": 0.7}]
    job = LabelledJob("j", 1, tracks[1], tracks)
    state = CalibrationState("v1", {"a": IsotonicCalibrator((0.0, 1.0), (0.1, 0.8))}, {"b": 2.0}, frozenset())
    setup = Setup(state, FusionSpec("weighted_average", 0.4, 0.6, 1), {"a": 1.0, "b": 0.5})
    direct = score_video(
        {"a": {0: [0.2], 1: [0.9]}, "b": {0: [0.3], 1: [0.7]}},
        [MemberSpec("a", "mean", 1.0), MemberSpec("b", "mean", 0.5)],
        setup.fusion,
        state,
    )
    assert score_jobs([job], ["a", "b"], setup) == [direct.score]
    assert score_jobs([job], ["a", "b"], setup, method="noisy_or") == [
        pytest.approx(noisy_or({"a": 0.1 + 0.7 * 0.9, "b": 0.7}))
    ]


def test_a_model_wrong_most_of_the_time_is_down_weighted_even_when_few() -> None:
    jobs = generate(120, seed=9)
    fit = recalibrate(jobs, IDENTITY)
    assert fit.feedback_weights["contrarian"] < 0.45
    assert fit.feedback_weights["reliable"] > 1.9


def test_the_operator_knobs_are_declared_once_with_their_settings_names() -> None:
    names = {name: (knob.option, knob.env, knob.flag) for name, knob in KNOBS}
    assert names == {
        "target_fpr": ("target_fpr", "VERITY_RECAL_TARGET_FPR", "--target-fpr"),
        "uncertain_band": ("uncertain_band", "VERITY_RECAL_UNCERTAIN_BAND", "--uncertain-band"),
        "held_out_fraction": ("held_out_fraction", "VERITY_RECAL_HELD_OUT", "--held-out"),
        "seed": ("seed", "VERITY_RECAL_SEED", "--seed"),
        "min_per_class": ("min_per_class", "VERITY_RECAL_MIN_PER_CLASS", "--min-per-class"),
        "min_isotonic_labels": ("min_isotonic_labels", "VERITY_RECAL_MIN_ISOTONIC", "--min-isotonic"),
        "fusion_method": ("method", "VERITY_RECAL_METHOD", "--method"),
    }


def test_overrides_replace_set_fields_and_are_validated() -> None:
    base = RecalibrationConfig(seed=4)
    assert base.with_overrides(target_fpr=0.1, seed=None) == RecalibrationConfig(seed=4, target_fpr=0.1)
    with pytest.raises(ValueError, match="target_fpr must be in"):
        base.with_overrides(target_fpr=2.0)
