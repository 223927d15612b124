import math

import pytest

from core.scoring.signal_rules import MIN_RULE_SIGNALS, REAL_BELOW, RULES, RuleRef, rule_score
from core.signals import SIGNALS, SignalReading, SignalSpec
from core.vocabulary import Verdict

NAN = math.nan
CATALOGUE = (
    SignalSpec("up", "forensics", 1, None, "higher: more suspicious"),
    SignalSpec("down", "quality", -1, None, "lower: more suspicious"),
    SignalSpec("heavy", "temporal", 1, None, "counts double"),
    SignalSpec("context", "codec", 0, None, "context only"),
)
RULES_HERE = {
    "up": RuleRef(real=0.0, fake=1.0),
    "down": RuleRef(real=1.0, fake=0.0),
    "heavy": RuleRef(real=0.0, fake=10.0, weight=2.0),
    "context": RuleRef(real=0.0, fake=1.0),
}


def _score(values: dict[str, float]) -> float:
    score = rule_score(values, CATALOGUE, RULES_HERE).score
    assert score is not None
    return score


def test_rule_scores_follow_the_deviation_toward_fake() -> None:
    clean = {"up": 0.0, "down": 1.0, "heavy": 0.0}
    mild = {"up": 0.4, "down": 0.8, "heavy": 2.0}
    strong = {"up": 0.9, "down": 0.1, "heavy": 8.0}
    extreme = {"up": 5.0, "down": -3.0, "heavy": 50.0}  # clipped at the fake reference
    scores = [_score(v) for v in (clean, mild, strong, extreme)]
    assert scores == sorted(scores) and len(set(scores)) == 4
    assert (scores[0], scores[-1]) == (0.0, 1.0)
    # Weighted mean: (0.4 + 0.2 + 2 × 0.2) / 4.
    assert scores[1] == pytest.approx(0.25)


def test_context_signals_are_ignored() -> None:
    base = {"up": 0.2, "down": 0.9, "heavy": 1.0}
    assert _score({**base, "context": 0.0}) == _score({**base, "context": 100.0})


def test_rules_never_say_fake() -> None:
    clean = rule_score({"up": 0.0, "down": 1.0, "heavy": 0.0}, CATALOGUE, RULES_HERE)
    worst = rule_score({"up": 1.0, "down": 0.0, "heavy": 10.0}, CATALOGUE, RULES_HERE)
    assert (clean.verdict, clean.confidence) == (Verdict.REAL, "low")
    assert (worst.verdict, worst.score) == (Verdict.UNCERTAIN, 1.0)
    edge = rule_score({"up": REAL_BELOW, "down": 1.0 - REAL_BELOW, "heavy": 10 * REAL_BELOW}, CATALOGUE, RULES_HERE)
    assert edge.verdict is Verdict.UNCERTAIN


def test_too_few_computed_signals_stay_uncertain() -> None:
    assert MIN_RULE_SIGNALS == 2
    one = rule_score({"up": 0.0, "down": NAN}, CATALOGUE, RULES_HERE)
    assert (one.score, one.verdict) == (0.0, Verdict.UNCERTAIN)
    assert one.missing == ("down", "heavy") and set(one.deviations) == {"up"}
    none = rule_score({}, CATALOGUE, RULES_HERE)
    assert (none.score, none.verdict, none.deviations) == (None, Verdict.UNCERTAIN, {})
    assert none.to_json()["missing"] == ["up", "down", "heavy"]
    assert SignalReading.from_json(none.to_json()) == none


def test_a_rule_against_the_catalogue_direction_is_refused() -> None:
    backwards = {**RULES_HERE, "down": RuleRef(real=0.0, fake=1.0)}
    with pytest.raises(ValueError, match="'down' points the other way"):
        rule_score({"down": 0.5}, CATALOGUE, backwards)


@pytest.mark.parametrize(("real", "fake", "weight"), [(1.0, 1.0, 1.0), (0.0, NAN, 1.0), (0.0, 1.0, 0.0)])
def test_bad_rule_refs_are_refused(real: float, fake: float, weight: float) -> None:
    with pytest.raises(ValueError):
        RuleRef(real, fake, weight)


def test_the_shipped_rules_match_the_catalogue() -> None:
    directional = {s.name: s.fake_direction for s in SIGNALS if s.fake_direction != 0}
    assert set(RULES) == set(directional)
    for name, rule in RULES.items():
        assert (rule.fake > rule.real) == (directional[name] > 0), name
