"""The rule-based reading of the forensic signals, while no fit uses them (the seed's fallback).

Each signal with a direction (``SignalSpec.fake_direction`` != 0) and a reference range (``RULES``) moves from
0 at its typical real value to 1 at a value typical of a manipulated face, linearly and clipped; the signals'
score is the weighted mean of those deviations over the ones computed. The reference points come from what
each signal measures (its unit and what a pasted or generated face does to it), not from a fit: nothing is
trained here, so the answer is low-confidence by construction. It never says FAKE: at best it says the signals
show nothing odd (REAL, low confidence) and otherwise UNCERTAIN. Once a stacker is fitted with the signals, they
enter the fused score instead and this reading is not made.

With a face, the face models' verdict stays the video's verdict and this reading rides beside it. Without any
face the video stays NO_FACE (the face models judged nothing), and this reading is the only answer, labelled
low-confidence.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.signals import SIGNALS, SignalReading, SignalSpec
from core.vocabulary import Verdict

# Fewer computed signals than this and the reading is UNCERTAIN whatever they say: one signal is one opinion.
MIN_RULE_SIGNALS = 2
# A weighted deviation below this reads as "nothing odd" (REAL, low confidence); at or above, UNCERTAIN.
REAL_BELOW = 0.25


@dataclass(frozen=True)
class RuleRef:
    """A signal's value typical of real faces (deviation 0), one typical of manipulated ones (deviation 1), and
    its weight in the mean."""

    real: float
    fake: float
    weight: float = 1.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.real) and math.isfinite(self.fake) and self.real != self.fake):
            raise ValueError(f"need finite, distinct real and fake references, got {self.real}, {self.fake}")
        if not (math.isfinite(self.weight) and self.weight > 0.0):
            raise ValueError(f"weight must be finite and > 0, got {self.weight}")

    def deviation(self, value: float) -> float:
        """0 at ``real``, 1 at ``fake``, linear between and clipped outside."""
        return min(max((value - self.real) / (self.fake - self.real), 0.0), 1.0)


# Reference ranges by signal, from the definitions in core/signals.py. Equal weights: with no labelled data there
# is nothing to rank them by.
RULES: Mapping[str, RuleRef] = {
    # Laplacian-variance ratio face / ring: a focused face is at least as sharp as its surroundings (1); a
    # blended one loses detail; 0.25 is half the contrast of edges (variance goes with the square).
    "quality.face_sharpness_ratio": RuleRef(real=1.0, fake=0.25),
    # |log| of the face / ring noise std ratio: one camera gives one noise level (0.1, about 10 %); a pasted
    # face with twice or half the noise sits at log 2 = 0.69.
    "forensics.noise_mismatch": RuleRef(real=0.1, fake=0.7),
    # Grey levels of luminance change of the face beyond its ring's between adjacent frames: codec noise is
    # well under one level; a per-frame blended face jumps by a few.
    "forensics.flicker": RuleRef(real=0.5, fake=3.0),
}


def rule_score(
    values: Mapping[str, float],
    catalogue: Sequence[SignalSpec] = SIGNALS,
    rules: Mapping[str, RuleRef] = RULES,
) -> SignalReading:
    """The signals' rule-based score for one video (``values``: NaN or absent = not computed).

    Only signals with a direction and a rule count; a rule whose reference points contradict the catalogue's
    direction is an error, so the two cannot drift apart silently.
    """
    deviations: dict[str, float] = {}
    weights: dict[str, float] = {}
    missing: list[str] = []
    for spec in catalogue:
        rule = rules.get(spec.name)
        if spec.fake_direction == 0 or rule is None:
            continue
        if (rule.fake > rule.real) != (spec.fake_direction > 0):
            raise ValueError(f"rule for {spec.name!r} points the other way from its fake_direction")
        value = values.get(spec.name, math.nan)
        if not math.isfinite(value):
            missing.append(spec.name)
            continue
        deviations[spec.name] = rule.deviation(value)
        weights[spec.name] = rule.weight
    if not deviations:
        return SignalReading(None, Verdict.UNCERTAIN, {}, tuple(missing))
    score = math.fsum(weights[n] * d for n, d in deviations.items()) / math.fsum(weights.values())
    nothing_odd = len(deviations) >= MIN_RULE_SIGNALS and score < REAL_BELOW
    return SignalReading(score, Verdict.REAL if nothing_odd else Verdict.UNCERTAIN, deviations, tuple(missing))
