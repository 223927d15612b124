import json

import pytest

from core.scoring.calibration import IsotonicCalibrator, PlattCalibrator
from core.scoring.fusion import NotEnoughModels, StackerParams
from core.scoring.override import KNOWN_CONTENT, REAL_EVIDENCE_CAP
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.vocabulary import Verdict

SEED_MEMBERS = [
    MemberSpec("xception", "topk:4", 0.25),
    MemberSpec("efficientnet_b4", "softmax:5", 0.25),
    MemberSpec("f3net", "topk:4", 0.25),
    MemberSpec("effort_clip", "topk:4", 0.25),
]
NOISY_OR = FusionSpec(method="noisy_or", t_low=0.996700, t_high=0.998248, min_models=2, params={})

TWO = [MemberSpec("a", "mean", 1.0), MemberSpec("b", "max", 1.0), MemberSpec("c", "topk:2", 1.0)]
AVERAGE = FusionSpec(method="weighted_average", t_low=0.5, t_high=0.5, min_models=2)


def test_two_tracks_second_is_fake_weighted_average() -> None:
    # Track 1: a mean(0.1, 0.2, 0.3) = 0.2, b max(0.1, 0.4) = 0.4 -> 0.3.
    # Track 2: a mean(0.8, 0.9, 1.0) = 0.9, b max(0.6, 0.7) = 0.7 -> 0.8.  c failed.
    result = score_video(
        {"a": {1: [0.1, 0.2, 0.3], 2: [0.8, 0.9, 1.0]}, "b": {1: [0.1, 0.4], 2: [0.6, 0.7]}},
        TWO,
        AVERAGE,
        failed_models={"c": "CUDA out of memory"},
    )
    assert result.verdict is Verdict.FAKE
    assert result.worst_track == 2
    assert result.score == pytest.approx(0.8, abs=1e-15)
    assert result.raw_fused == result.score
    assert result.per_track[1].score == pytest.approx(0.3, abs=1e-15)
    assert result.per_track[1].per_model == pytest.approx({"a": 0.2, "b": 0.4}, abs=1e-15)
    assert result.per_track[2].frames == 3
    assert result.per_model["a"].aggregated == pytest.approx(0.9, abs=1e-15)
    assert result.per_model["b"].calibrated == 0.7
    assert result.per_model["c"].error == "CUDA out of memory"
    assert result.per_model["c"].aggregated is None
    assert result.overrides == ()
    assert result.calibration_version is None
    assert result.thresholds == {"t_low": 0.5, "t_high": 0.5}


def test_seed_noisy_or_two_tracks_second_fake() -> None:
    real_track = [0.05, 0.1, 0.2, 0.3, 0.1]
    fake_track = [0.9] * 27
    scores = {m.name: {0: real_track, 7: fake_track} for m in SEED_MEMBERS}
    result = score_video(scores, SEED_MEMBERS, NOISY_OR)
    # Every model aggregates the fake track to 0.9 -> 1 - 0.1^4 = 0.9999 > T_high.
    assert result.worst_track == 7
    assert result.score == pytest.approx(0.9999, abs=1e-12)
    assert result.verdict is Verdict.FAKE
    assert result.per_model["efficientnet_b4"].frames == 27
    assert result.per_model["xception"].aggregator == "topk:4"
    # Track 0: topk:4 of real_track = (0.3 + 0.2 + 0.1 + 0.1) / 4 = 0.175.
    assert result.per_track[0].per_model["xception"] == pytest.approx(0.175, abs=1e-15)
    assert result.per_track[0].score < NOISY_OR.t_low


CALIBRATION = CalibrationState(
    version="cal-7",
    calibrators={"a": IsotonicCalibrator(x=(0.0, 1.0), y=(0.0, 0.5))},
    feedback_weights={"c": 2.0},
    reliable_models=frozenset({"a", "b"}),
)
CALIBRATED_SCORES = {
    "a": {1: [0.1, 0.1], 2: [0.2, 0.3]},
    "b": {1: [0.3], 2: [0.1, 0.15]},
    "c": {1: [0.2, 0.4], 2: [0.9, 0.95, 1.0]},
}
SPLIT = FusionSpec(method="weighted_average", t_low=0.45, t_high=0.55, min_models=2)


def test_calibration_feedback_weights_and_real_evidence_cap() -> None:
    # Track 2: a mean 0.25 -> isotonic 0.125; b max 0.15; c topk:2 0.975 with weight 1 x 2.0.
    #   fused (0.125 + 0.15 + 2 * 0.975) / 4 = 0.55625; reliable a, b both < 0.2 -> capped at 0.40.
    # Track 1: a 0.1 -> 0.05; b 0.3; c 0.3 -> (0.05 + 0.3 + 0.6) / 4 = 0.2375, no cap (b >= 0.2).
    result = score_video(CALIBRATED_SCORES, TWO, SPLIT, CALIBRATION)
    assert result.raw_fused == pytest.approx(0.55625, abs=1e-15)
    assert result.score == 0.40
    assert result.worst_track == 2
    assert result.verdict is Verdict.REAL  # uncapped 0.55625 would have been FAKE
    assert [o.kind for o in result.overrides] == [REAL_EVIDENCE_CAP]
    assert result.overrides[0].before == pytest.approx(0.55625, abs=1e-15)
    assert result.overrides[0].after == 0.40
    assert result.per_track[1].score == pytest.approx(0.2375, abs=1e-15)
    assert result.per_model["a"].calibrated == pytest.approx(0.125, abs=1e-15)
    assert result.per_model["c"].weight == 2.0
    assert result.per_model["b"].weight == 1.0
    assert result.calibration_version == "cal-7"


def test_known_content_override_after_the_cap() -> None:
    result = score_video(CALIBRATED_SCORES, TWO, SPLIT, CALIBRATION, known_label="FAKE")
    assert result.verdict is Verdict.FAKE
    assert result.score == 1.0
    assert [(o.kind, o.before, o.after) for o in result.overrides] == [
        (REAL_EVIDENCE_CAP, pytest.approx(0.55625, abs=1e-15), 0.40),
        (KNOWN_CONTENT, 0.40, 1.0),
    ]
    real = score_video({m.name: {0: [0.9] * 27} for m in SEED_MEMBERS}, SEED_MEMBERS, NOISY_OR, known_label="real")
    assert (real.verdict, real.score) == (Verdict.REAL, 0.0)
    assert real.raw_fused == pytest.approx(0.9999, abs=1e-12)


def test_stacker_method_end_to_end() -> None:
    params = StackerParams(coef={"a": 2.0, "b": -1.0}, intercept=-0.5, calibration=PlattCalibrator(a=-2.0, b=1.0))
    fusion = FusionSpec(method="stacker", t_low=0.4, t_high=0.6, min_models=2, params=params.to_dict())
    members = [MemberSpec("a", "mean", 1.0), MemberSpec("b", "mean", 1.0)]
    # z = -0.5 + 2 * 0.8 - 0.3 = 0.8 -> 1 / (1 + exp(-2 * 0.8 + 1)) = 0.6457 > 0.6
    result = score_video({"a": {0: [0.8]}, "b": {0: [0.3]}}, members, fusion)
    assert result.score == pytest.approx(0.6456563062257954, abs=1e-12)
    assert result.verdict is Verdict.FAKE


def test_to_dict_is_json_safe() -> None:
    result = score_video(CALIBRATED_SCORES, TWO, SPLIT, CALIBRATION, known_label="FAKE")
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "FAKE"
    assert data["worst_track"] == 2
    assert set(data["per_track"]) == {"1", "2"}
    assert data["per_track"]["2"]["per_model"]["c"] == pytest.approx(0.975, abs=1e-15)
    assert data["thresholds"] == {"t_low": 0.45, "t_high": 0.55}
    assert data["overrides"][1] == {
        "kind": KNOWN_CONTENT,
        "reason": "a moderator labelled identical content (same sha256) FAKE",
        "before": 0.4,
        "after": 1.0,
    }
    assert data["calibration_version"] == "cal-7"
    assert set(data["per_model"]["a"]) == {"frames", "aggregated", "calibrated", "weight", "aggregator"}

    failed = score_video({"a": {0: [0.1]}, "b": {0: [0.2]}}, TWO, AVERAGE, failed_models={"c": "timeout"}).to_dict()
    assert failed["per_model"]["c"] == {
        "frames": 0,
        "aggregated": None,
        "calibrated": None,
        "weight": 1.0,
        "aggregator": "topk:2",
        "error": "timeout",
    }


def test_not_enough_models() -> None:
    with pytest.raises(NotEnoughModels, match="c: timeout"):
        score_video({"a": {0: [0.5]}}, TWO, AVERAGE, failed_models={"b": "oom", "c": "timeout"})


def test_no_tracks_is_the_callers_no_face_case() -> None:
    with pytest.raises(ValueError, match="NO_FACE"):
        score_video({"a": {}, "b": {}, "c": {}}, TWO, AVERAGE)


@pytest.mark.parametrize(
    ("scores", "failed", "message"),
    [
        ({"a": {0: [0.5]}, "b": {0: [0.5]}, "c": {0: [0.5]}, "d": {0: [0.5]}}, {}, "not ensemble members"),
        ({"a": {0: [0.5]}, "b": {0: [0.5]}}, {}, "neither scores nor an error"),
        ({"a": {0: [0.5], 1: [0.5]}, "b": {0: [0.5]}, "c": {0: [0.5]}}, {}, "no frame scores for track 1"),
        ({"a": {0: [0.5]}, "b": {0: []}, "c": {0: [0.5]}}, {}, "no frame scores for track 0"),
    ],
)
def test_inconsistent_inputs_raise(
    scores: dict[str, dict[int, list[float]]], failed: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        score_video(scores, TWO, AVERAGE, failed_models=failed)


def test_specs_validate_early() -> None:
    with pytest.raises(ValueError, match="topk:K"):
        MemberSpec("a", "topk4", 1.0)
    with pytest.raises(ValueError):
        MemberSpec("a", "mean", -1.0)
    with pytest.raises(ValueError, match="unknown fusion method"):
        FusionSpec(method="vote", t_low=0.5, t_high=0.5, min_models=1)
    with pytest.raises(ValueError):
        FusionSpec(method="noisy_or", t_low=0.9, t_high=0.8, min_models=1)
    with pytest.raises(ValueError):
        CalibrationState(
            version=None,
            calibrators={"a": PlattCalibrator(-1.0, 0.0)},
            feedback_weights={},
            reliable_models=frozenset(),
        )
    with pytest.raises(ValueError, match="duplicate"):
        score_video({"a": {0: [0.5]}}, [MemberSpec("a", "mean", 1.0)] * 2, AVERAGE)


def test_calibration_state_json_round_trip() -> None:
    restored = CalibrationState.from_dict(json.loads(json.dumps(CALIBRATION.to_dict())))
    assert restored == CALIBRATION
