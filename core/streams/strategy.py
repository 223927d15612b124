"""How a live stream decides: seed 000's Option A (a window through the pack's own pipeline) or Option B (fuse
each frame, then average over time), with the thresholds, the hysteresis and the frames a decision waits for.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypedDict, TypeVar

from core.scoring.aggregation import parse_aggregator
from core.vocabulary import StreamAveraging, StreamStrategyKind

DEFAULT_FPS = 2.0
DEFAULT_WINDOW = 27  # the seed's training videos: ~27 frames, 13.5 s at 2 fps
DEFAULT_EMA_ALPHA = 0.3
# In logit units: the seed's uncertain band (0.996700..0.998248) is ~0.64 wide there, so 0.2 damps a score
# hovering at one threshold without swallowing the band.
DEFAULT_HYSTERESIS = 0.2
# Option B's first decision after 10 frames (5 s at 2 fps), the response time the seed expects of it.
DEFAULT_PER_FRAME_MIN_FRAMES = 10
MAX_FPS = 60.0
MAX_WINDOW = 1000

_FIELDS = (
    "kind",
    "fps",
    "window",
    "aggregators",
    "averaging",
    "ema_alpha",
    "t_low",
    "t_high",
    "hysteresis",
    "min_frames",
)


class StreamStrategyDict(TypedDict):
    """The JSON form of a StreamStrategy (``to_dict``; ``from_mapping`` reads it back)."""

    kind: str
    fps: float
    window: int
    aggregators: dict[str, str]
    averaging: str
    ema_alpha: float
    t_low: float | None
    t_high: float | None
    hysteresis: float
    min_frames: int | None


_E = TypeVar("_E", StreamStrategyKind, StreamAveraging)


def _empty() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True)
class StreamStrategy:
    """One stream's decision rule.

    ``window``: Option A's frames (the last N frames with a face) or Option B's "mean" span; EMA ignores it.
    ``aggregators``: member -> aggregator spec overriding the member's own (Option A only).
    ``t_low``/``t_high``: None = the pack's (or the calibration version's) thresholds for "window"; for
    "per_frame" the calibration version's fitted Option B thresholds, else the pack's.
    ``hysteresis``: logit margin a score must pass a threshold by before the verdict changes.
    ``min_frames``: frames with a face before the first decision; None = the whole window for "window" (as in
    training), DEFAULT_PER_FRAME_MIN_FRAMES for "per_frame".
    """

    kind: StreamStrategyKind
    fps: float = DEFAULT_FPS
    window: int = DEFAULT_WINDOW
    aggregators: Mapping[str, str] = field(default_factory=_empty)
    averaging: StreamAveraging = StreamAveraging.MEAN
    ema_alpha: float = DEFAULT_EMA_ALPHA
    t_low: float | None = None
    t_high: float | None = None
    hysteresis: float = DEFAULT_HYSTERESIS
    min_frames: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", StreamStrategyKind(self.kind))
        object.__setattr__(self, "averaging", StreamAveraging(self.averaging))
        object.__setattr__(self, "aggregators", MappingProxyType(dict(self.aggregators)))
        if not (math.isfinite(self.fps) and 0.0 < self.fps <= MAX_FPS):
            raise ValueError(f"fps must be in (0, {MAX_FPS}], got {self.fps}")
        if not 1 <= self.window <= MAX_WINDOW:
            raise ValueError(f"window must be between 1 and {MAX_WINDOW} frames, got {self.window}")
        for member, spec in self.aggregators.items():
            try:
                parse_aggregator(spec)
            except ValueError as exc:
                raise ValueError(f"aggregator of {member!r}: {exc}") from None
        if not (math.isfinite(self.ema_alpha) and 0.0 < self.ema_alpha <= 1.0):
            raise ValueError(f"ema_alpha must be in (0, 1], got {self.ema_alpha}")
        if (self.t_low is None) != (self.t_high is None):
            raise ValueError("give both t_low and t_high, or neither (to use the calibrated ones)")
        if self.t_low is not None and self.t_high is not None and not 0.0 <= self.t_low <= self.t_high <= 1.0:
            raise ValueError(f"need 0 <= t_low <= t_high <= 1, got {self.t_low}, {self.t_high}")
        if not (math.isfinite(self.hysteresis) and self.hysteresis >= 0.0):
            raise ValueError(f"hysteresis must be a finite logit margin >= 0, got {self.hysteresis}")
        if self.min_frames is not None and self.min_frames < 1:
            raise ValueError(f"min_frames must be >= 1, got {self.min_frames}")
        if self.min_frames is not None and self.min_frames > self.window and self.uses_window:
            raise ValueError(f"min_frames ({self.min_frames}) cannot exceed the window ({self.window})")

    @property
    def uses_window(self) -> bool:
        """Whether the decision looks at the last ``window`` frames (all but the EMA)."""
        return self.kind is StreamStrategyKind.WINDOW or self.averaging is StreamAveraging.MEAN

    @property
    def frames_needed(self) -> int:
        """Frames with a face before the first decision."""
        if self.min_frames is not None:
            return self.min_frames
        if self.kind is StreamStrategyKind.WINDOW:
            return self.window
        return min(DEFAULT_PER_FRAME_MIN_FRAMES, self.window) if self.uses_window else DEFAULT_PER_FRAME_MIN_FRAMES

    @property
    def thresholds(self) -> tuple[float, float] | None:
        """The explicit (t_low, t_high), or None to use the calibrated ones."""
        if self.t_low is None or self.t_high is None:
            return None
        return (self.t_low, self.t_high)

    def to_dict(self) -> StreamStrategyDict:
        return {
            "kind": self.kind.value,
            "fps": self.fps,
            "window": self.window,
            "aggregators": dict(self.aggregators),
            "averaging": self.averaging.value,
            "ema_alpha": self.ema_alpha,
            "t_low": self.t_low,
            "t_high": self.t_high,
            "hysteresis": self.hysteresis,
            "min_frames": self.min_frames,
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, object]) -> "StreamStrategy":
        """Parse a client's or a stored strategy; ValueError naming the bad field. Missing fields take defaults."""
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown stream strategy field(s) {unknown}; expected some of {list(_FIELDS)}")
        if "kind" not in data:
            raise ValueError(f"stream strategy needs a kind: one of {[k.value for k in StreamStrategyKind]}")
        return cls(
            kind=_choice(data, "kind", StreamStrategyKind),
            fps=_number(data, "fps", DEFAULT_FPS),
            window=_integer(data, "window", DEFAULT_WINDOW),
            aggregators=_aggregators(data.get("aggregators", {})),
            averaging=_choice(data, "averaging", StreamAveraging, StreamAveraging.MEAN),
            ema_alpha=_number(data, "ema_alpha", DEFAULT_EMA_ALPHA),
            t_low=_optional_number(data, "t_low"),
            t_high=_optional_number(data, "t_high"),
            hysteresis=_number(data, "hysteresis", DEFAULT_HYSTERESIS),
            min_frames=_optional_integer(data, "min_frames"),
        )


def _choice(data: Mapping[str, object], name: str, enum: type[_E], default: _E | None = None) -> _E:
    value = data.get(name, default)
    choices = [e.value for e in enum]
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return enum(value)


def _number(data: Mapping[str, object], name: str, default: float) -> float:
    value = data.get(name, default)
    # bool is an int subclass: true/false is never a meant number.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


def _optional_number(data: Mapping[str, object], name: str) -> float | None:
    if data.get(name) is None:
        return None
    return _number(data, name, 0.0)


def _integer(data: Mapping[str, object], name: str, default: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    return value


def _optional_integer(data: Mapping[str, object], name: str) -> int | None:
    if data.get(name) is None:
        return None
    return _integer(data, name, 0)


def _aggregators(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValueError(f"aggregators must map member names to aggregator specs, got {value!r}")
    return dict(value)
