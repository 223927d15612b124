import json

import pytest

from core.scoring.override import (
    KNOWN_CONTENT,
    REAL_EVIDENCE_CAP,
    Override,
    feedback_weight,
    known_content_override,
    real_evidence_cap,
)


@pytest.mark.parametrize(
    ("correct", "n", "expected"),
    [
        (0, 0, 1.0),  # no feedback: accuracy 1/2 -> neutral
        (1, 2, 1.0),  # 2/4
        (1, 1, 1.4),  # 2/3 -> 1 + 1.2 * (1/6) / 0.5
        (0, 1, 1 - 0.7 / 3),  # 1/3 -> 1 - 0.7 * (1/6) / 0.5
        (10, 10, 2.0),  # 11/12 -> 1 + 1.2 * (5/12) / 0.5
        (0, 10, 1 - 0.7 * 5 / 6),  # 1/12 -> 1 - 0.7 * (5/12) / 0.5
        (3, 4, 1.4),  # 4/6
    ],
)
def test_feedback_weight_hand_computed(correct: int, n: int, expected: float) -> None:
    assert feedback_weight(correct, n) == pytest.approx(expected, abs=1e-12)


def test_feedback_weight_stays_inside_the_seed_range() -> None:
    assert 2.19 < feedback_weight(10_000, 10_000) < 2.2
    assert 0.3 < feedback_weight(0, 10_000) < 0.31
    weights = [feedback_weight(c, 50) for c in range(51)]
    assert weights == sorted(weights)


def test_feedback_weight_custom_range() -> None:
    assert feedback_weight(1, 1, lo=0.5, hi=3.0) == pytest.approx(1 + 2.0 / 3, abs=1e-12)


@pytest.mark.parametrize(
    ("correct", "n", "lo", "hi"),
    [(3, 2, 0.3, 2.2), (-1, 2, 0.3, 2.2), (0, -1, 0.3, 2.2), (1, 2, 1.5, 2.2), (1, 2, 0.3, 0.9), (1, 2, 0.0, 2.2)],
)
def test_feedback_weight_rejects_bad_input(correct: int, n: int, lo: float, hi: float) -> None:
    with pytest.raises(ValueError):
        feedback_weight(correct, n, lo, hi)


RELIABLE = frozenset({"xception", "f3net"})


def test_real_evidence_cap_applies_when_reliable_models_agree_real() -> None:
    calibrated = {"xception": 0.05, "f3net": 0.12, "effort_clip": 0.99}
    override = real_evidence_cap(0.72, calibrated, RELIABLE)
    assert override is not None
    assert (override.kind, override.before, override.after) == (REAL_EVIDENCE_CAP, 0.72, 0.40)
    assert "f3net=0.120" in override.reason and "xception=0.050" in override.reason


def test_real_evidence_cap_not_when_one_reliable_model_disagrees() -> None:
    assert real_evidence_cap(0.72, {"xception": 0.05, "f3net": 0.2, "effort_clip": 0.99}, RELIABLE) is None


def test_real_evidence_cap_needs_enough_reliable_voters() -> None:
    # f3net failed: one reliable voter is not enough.
    assert real_evidence_cap(0.72, {"xception": 0.05, "effort_clip": 0.99}, RELIABLE) is None
    assert real_evidence_cap(0.72, {"xception": 0.05}, RELIABLE, min_reliable=1) is not None


def test_real_evidence_cap_leaves_low_scores_alone() -> None:
    assert real_evidence_cap(0.40, {"xception": 0.05, "f3net": 0.1}, RELIABLE) is None
    assert real_evidence_cap(0.1, {"xception": 0.05, "f3net": 0.1}, RELIABLE) is None


def test_real_evidence_cap_custom_values() -> None:
    override = real_evidence_cap(0.9, {"xception": 0.25, "f3net": 0.1}, RELIABLE, cap=0.35, agree_below=0.3)
    assert override is not None and override.after == 0.35


def test_known_content_override() -> None:
    assert known_content_override(None, 0.7) is None
    fake = known_content_override("fake", 0.2)
    assert fake == Override(
        kind=KNOWN_CONTENT,
        reason="a moderator labelled identical content (same sha256) FAKE",
        before=0.2,
        after=1.0,
    )
    real = known_content_override("REAL", 0.9999)
    assert real is not None and (real.before, real.after) == (0.9999, 0.0)
    with pytest.raises(ValueError):
        known_content_override("UNCERTAIN", 0.5)


def test_override_to_dict_is_json() -> None:
    override = Override(kind="k", reason="r", before=0.9, after=0.4)
    assert json.loads(json.dumps(override.to_dict())) == {"kind": "k", "reason": "r", "before": 0.9, "after": 0.4}
