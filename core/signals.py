"""The forensic signals: a detector family beside the face models (issue 15, seed 002).

Each signal is one number per job computed from the decoded frames, the container and the face tracks
(workers/forensics/), or NaN with a reason when it cannot be (too few frames, no face, no motion). This module
holds what every process shares about them: the catalogue (name, family, which way is suspicious, the value
that counts as a strong real-world cue) and the per-job report stored in ``results.signals``.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from core.vocabulary import Verdict

CueOp = Literal[">=", "<="]
_OPS: Mapping[str, Callable[[float, float], bool]] = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class SignalSpec:
    """One signal: ``fake_direction`` +1 when a higher value is more suspicious, -1 when a lower one is, 0 when it
    is context only (not used by rules); ``real_cue`` (op, threshold): a value passing it is a strong real cue."""

    name: str
    family: str
    fake_direction: int
    real_cue: tuple[CueOp, float] | None
    description: str

    def is_real_cue(self, value: float) -> bool:
        """Whether ``value`` passes this signal's real-world cue (never for NaN or a signal without one)."""
        if self.real_cue is None or math.isnan(value):
            return False
        op, threshold = self.real_cue
        return _OPS[op](value, threshold)


SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec(
        "quality.blur_frame",
        "quality",
        0,
        None,
        "Sharpness of the whole picture: variance of the Laplacian of the grey frame, median over sampled frames.",
    ),
    SignalSpec(
        "quality.blur_face",
        "quality",
        0,
        None,
        "Sharpness of the face: variance of the Laplacian of the grey face region, median over detections.",
    ),
    SignalSpec(
        "quality.face_sharpness_ratio",
        "quality",
        -1,
        None,
        "Face sharpness over the sharpness of a ring around it; a blended-in face tends to be the blurrier one.",
    ),
    SignalSpec(
        "quality.bitrate_bpp",
        "quality",
        0,
        None,
        "Video bits per pixel per frame (stream bitrate / (width x height x fps)); low: heavily compressed.",
    ),
    SignalSpec(
        "forensics.noise_mismatch",
        "forensics",
        1,
        None,
        "|log| of the ratio of the noise residual's std in the face to that in a ring around it; a pasted face "
        "carries noise unlike the camera's elsewhere in the frame.",
    ),
    SignalSpec(
        "forensics.flicker",
        "forensics",
        1,
        None,
        "Frame-to-frame jitter of the face's mean luminance beyond what the background's explains, between "
        "adjacent frames.",
    ),
    SignalSpec(
        "artefacts.hf_share",
        "artefacts",
        0,
        None,
        "Share of the face crop's spectral energy from 0.125 cycles/px to Nyquist that lies above 0.25 (the top "
        "octave): low for a smoothed face, high for fine texture or noise.",
    ),
    SignalSpec(
        "artefacts.spectrum_slope",
        "artefacts",
        0,
        None,
        "Slope of the face crop's azimuthally averaged log power spectrum against log frequency (natural "
        "images about -2; smoother is steeper).",
    ),
    SignalSpec(
        "temporal.flow_oddity",
        "temporal",
        # Context only: a real head moving against a still background scores near 1 as well (median 0.7 on the
        # real test clips, the same as on the fakes), so a higher value is not evidence by itself.
        0,
        None,
        "How far the face's optical flow (Farneback) departs from the motion of its surroundings between "
        "adjacent frames, relative to the larger of the two motions (0: they move together).",
    ),
    SignalSpec(
        "codec.keyframe_interval",
        "codec",
        0,
        None,
        "Mean number of frames between keyframes (cameras: short fixed GOPs; re-encoders: long ones).",
    ),
    SignalSpec(
        "codec.ffmpeg_written",
        "codec",
        0,
        None,
        "1 when the container says FFmpeg (Lavf) wrote it, i.e. it was re-encoded or remuxed; 0 when it names "
        "another encoder (HandBrake, a camera); NaN when it names none.",
    ),
    SignalSpec(
        "scope.flat_share",
        "scope",
        0,
        None,
        "Share of face pixels whose neighbours have the same grey level (flat fills: drawn or rendered faces), "
        "the most photographic track's; core/scope.py abstains above its limit.",
    ),
    SignalSpec(
        "scope.face_px",
        "scope",
        0,
        None,
        "The largest track's face size (median short side of its box, px); core/scope.py abstains when every "
        "member would have to upscale it too far.",
    ),
)

SIGNAL_NAMES: tuple[str, ...] = tuple(s.name for s in SIGNALS)
SPECS: Mapping[str, SignalSpec] = {s.name: s for s in SIGNALS}


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


# The rule-based reading is the signals' own low-confidence answer (core/scoring/signal_rules.py).
LOW_CONFIDENCE = "low"
RULES_SOURCE = "rules"


@dataclass(frozen=True)
class SignalReading:
    """The signals' own answer: ``score`` (weighted deviation toward fake in [0, 1], None when no ruled signal
    was computed), REAL or UNCERTAIN (never FAKE), each computed signal's deviation, and the ruled signals that
    were not computed."""

    score: float | None
    verdict: Verdict
    deviations: Mapping[str, float]
    missing: tuple[str, ...]
    source: str = RULES_SOURCE
    confidence: str = LOW_CONFIDENCE

    def __post_init__(self) -> None:
        if self.verdict not in (Verdict.REAL, Verdict.UNCERTAIN):
            raise ValueError(f"rules alone answer REAL or UNCERTAIN, never {self.verdict.value}")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "score": self.score,
            "verdict": self.verdict.value,
            "confidence": self.confidence,
            "deviations": dict(self.deviations),
            "missing": list(self.missing),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SignalReading:
        score = data.get("score")
        return cls(
            score=None if score is None else float(score),
            verdict=Verdict(data["verdict"]),
            deviations={name: float(v) for name, v in (data.get("deviations") or {}).items()},
            missing=tuple(str(n) for n in data.get("missing") or ()),
            source=str(data.get("source") or RULES_SOURCE),
            confidence=str(data.get("confidence") or LOW_CONFIDENCE),
        )


@dataclass(frozen=True)
class SignalReport:
    """One job's signals: ``values`` (NaN: not computed), ``reasons`` (why each NaN one was not), the seconds
    they took, and ``scope``: why the pack cannot judge this media (core/scope.py), None when it can."""

    values: Mapping[str, float]
    reasons: Mapping[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    scope: str | None = None
    # The rule-based reading of the values, set after scoring unless a stacker fitted with signals fused them.
    reading: SignalReading | None = None

    def to_json(self) -> dict[str, Any]:
        # JSON has no NaN (Postgres refuses it): a signal not computed is null, its reason says why.
        return {
            "values": {name: None if math.isnan(v) else v for name, v in self.values.items()},
            "reasons": dict(self.reasons),
            "seconds": self.seconds,
            "scope": self.scope,
            "reading": None if self.reading is None else self.reading.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> SignalReport | None:
        """A stored ``signals`` column; None for a row without one (older results, images before signals)."""
        if not data:
            return None
        return cls(
            values={name: _float(v) for name, v in (data.get("values") or {}).items()},
            reasons={name: str(why) for name, why in (data.get("reasons") or {}).items()},
            seconds=float(data.get("seconds") or 0.0),
            scope=data.get("scope"),
            reading=SignalReading.from_json(data["reading"]) if data.get("reading") else None,
        )

    def real_cues(self, catalogue: Sequence[SignalSpec] = SIGNALS) -> tuple[str, ...]:
        """The signals whose value passes their real-world cue, in catalogue order."""
        return tuple(s.name for s in catalogue if s.is_real_cue(self.values.get(s.name, math.nan)))
