"""Fused P(fake) -> three-way verdict."""

import math

from core.vocabulary import Verdict


def decide(score: float, t_low: float, t_high: float) -> Verdict:
    """REAL below ``t_low``, FAKE above ``t_high``, UNCERTAIN in between (both ends included).

    ``t_low == t_high`` is a plain two-way threshold (the seed's weighted average: FAKE if > 0.5).
    """
    if not (math.isfinite(t_low) and math.isfinite(t_high) and t_low <= t_high):
        raise ValueError(f"thresholds must be finite with t_low <= t_high, got {t_low}, {t_high}")
    if not math.isfinite(score):
        raise ValueError(f"score must be finite, got {score}")
    if score < t_low:
        return Verdict.REAL
    if score > t_high:
        return Verdict.FAKE
    return Verdict.UNCERTAIN
