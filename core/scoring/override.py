"""Moderator feedback and real-world evidence acting on a score: per-model weight multipliers and recorded
overrides."""

import math
from collections.abc import Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass
from typing import Any

from core.signals import SignalSpec

REAL_EVIDENCE_CAP = "real_evidence_cap"
FORENSIC_REAL_CAP = "forensic_real_cap"
KNOWN_CONTENT = "known_content"

# Real-world cues that must agree before they cap a score: one cue can be a coincidence of one camera or one
# encoder (the seed capped only on several agreeing cues, never on one).
MIN_REAL_CUES = 2


@dataclass(frozen=True)
class Override:
    """One change to the fused score, recorded in the result so nobody has to guess why."""

    kind: str
    reason: str
    before: float
    after: float
    cues: tuple[str, ...] = ()  # the forensic real-world cues that fired (forensic_real_cap only)

    def __post_init__(self) -> None:
        object.__setattr__(self, "cues", tuple(self.cues))  # read back from JSON as a list

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.cues:
            out["cues"] = list(self.cues)
        else:
            del out["cues"]  # results stored before cues existed read the same
        return out


def feedback_weight(correct: int, n: int, lo: float = 0.3, hi: float = 2.2) -> float:
    """Weight multiplier for a model that agreed with ``correct`` of ``n`` moderator labels.

    Accuracy is Laplace-smoothed, (correct + 1) / (n + 2), so a model with no labels sits at 0.5.
    The map is piecewise linear through (0, lo), (0.5, 1.0), (1, hi): no feedback leaves the weight
    unchanged, always right tends to ``hi`` and always wrong to ``lo``. Two pieces because the
    seed's range [0.3, 2.2] is not symmetric about 1. Smoothed accuracy never reaches 0 or 1, so
    the clamp is only a guard. With the seed's range the first label moves the weight to 1.4 (right)
    or 0.767 (wrong); later steps shrink like 2.4 / n, so one label has a small effect.
    """
    if n < 0 or not 0 <= correct <= n:
        raise ValueError(f"need 0 <= correct <= n, got correct={correct}, n={n}")
    if not (0.0 < lo <= 1.0 <= hi and math.isfinite(hi)):
        raise ValueError(f"need 0 < lo <= 1 <= hi, got lo={lo}, hi={hi}")
    accuracy = (correct + 1) / (n + 2)
    # Each half of the accuracy range spans one side of the multiplier range.
    span = hi - 1.0 if accuracy >= 0.5 else 1.0 - lo
    weight = 1.0 + span * (accuracy - 0.5) / 0.5
    return min(max(weight, lo), hi)


def real_evidence_cap(
    fused: float,
    calibrated: Mapping[str, float],
    reliable: AbstractSet[str],
    cap: float = 0.40,
    agree_below: float = 0.2,
    min_reliable: int = 2,
) -> Override | None:
    """Cap the fused P(fake) at ``cap`` when the models feedback has shown reliable agree on REAL.

    "Agree" means at least ``min_reliable`` reliable models produced a score and every one of them
    is below ``agree_below``. A fused score already at or below the cap is left alone.
    """
    if min_reliable < 1:
        raise ValueError(f"min_reliable must be >= 1, got {min_reliable}")
    voters = sorted(name for name in reliable if name in calibrated)
    if len(voters) < min_reliable or fused <= cap:
        return None
    if any(calibrated[name] >= agree_below for name in voters):
        return None
    scores = ", ".join(f"{name}={calibrated[name]:.3f}" for name in voters)
    return Override(
        kind=REAL_EVIDENCE_CAP,
        reason=f"all {len(voters)} reliable models score below {agree_below} ({scores}); P(fake) capped at {cap}",
        before=fused,
        after=cap,
    )


def forensic_real_cap(
    fused: float,
    values: Mapping[str, float],
    catalogue: Sequence[SignalSpec],
    cap: float = 0.40,
    min_cues: int = MIN_REAL_CUES,
) -> Override | None:
    """Cap the fused P(fake) at ``cap`` when at least ``min_cues`` forensic signals of ``catalogue`` pass their
    real-world cue (``SignalSpec.real_cue``; a NaN or absent value never does). The cues are recorded by name.
    A fused score already at or below the cap is left alone.
    """
    if min_cues < 1:
        raise ValueError(f"min_cues must be >= 1, got {min_cues}")
    cues = tuple(s.name for s in catalogue if s.is_real_cue(values.get(s.name, math.nan)))
    if len(cues) < min_cues or fused <= cap:
        return None
    return Override(
        kind=FORENSIC_REAL_CAP,
        reason=f"{len(cues)} forensic real-world cues agree ({', '.join(cues)}); P(fake) capped at {cap}",
        before=fused,
        after=cap,
        cues=cues,
    )


def known_content_override(label: str | None, fused: float) -> Override | None:
    """A moderator's REAL/FAKE label on identical content (same sha256) replaces the score with 0 or 1."""
    if label is None:
        return None
    normalized = label.upper()
    if normalized not in ("REAL", "FAKE"):
        raise ValueError(f"known-content label must be 'REAL' or 'FAKE', got {label!r}")
    return Override(
        kind=KNOWN_CONTENT,
        reason=f"a moderator labelled identical content (same sha256) {normalized}",
        before=fused,
        after=1.0 if normalized == "FAKE" else 0.0,
    )
