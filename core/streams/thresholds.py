"""Option B's own thresholds: fitted on labelled videos for a target FPR, stored inside a calibration version.

The pack's thresholds were validated on whole videos (aggregate, calibrate, fuse); Option B averages per-frame
fused scores instead, whose distribution differs, so seed 000 expects it to need thresholds of its own. They are
chosen as recalibration chooses Option A's (``choose_thresholds``), on each video's score at the end of its
stream, which is the score the simulator's final verdict and FPR count. They live in the version's
``thresholds`` JSON under ``per_frame`` -> averaging ("mean" / "ema"), so no migration is needed and a version
carries everything its streams decide with.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

from core.scoring.recalibration_steps import choose_thresholds
from core.streams.simulate import LabelledVideo, Scoring, replay_stream
from core.streams.strategy import StreamStrategy
from core.vocabulary import StreamAveraging, StreamStrategyKind

PER_FRAME_KEY = "per_frame"


class PerFrameThresholdsDict(TypedDict):
    averaging: str
    t_low: float
    t_high: float
    target_fpr: float
    uncertain_band: float
    window: int
    ema_alpha: float
    videos: int
    real: int
    fake: int


@dataclass(frozen=True)
class PerFrameThresholds:
    """Option B thresholds for one averaging, with what they were fitted for and on."""

    averaging: StreamAveraging
    t_low: float
    t_high: float
    target_fpr: float
    uncertain_band: float
    window: int
    ema_alpha: float
    videos: int
    real: int
    fake: int

    def to_dict(self) -> PerFrameThresholdsDict:
        return {
            "averaging": self.averaging.value,
            "t_low": self.t_low,
            "t_high": self.t_high,
            "target_fpr": self.target_fpr,
            "uncertain_band": self.uncertain_band,
            "window": self.window,
            "ema_alpha": self.ema_alpha,
            "videos": self.videos,
            "real": self.real,
            "fake": self.fake,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "PerFrameThresholds":
        return cls(
            averaging=StreamAveraging(data["averaging"]),
            t_low=float(data["t_low"]),
            t_high=float(data["t_high"]),
            target_fpr=float(data["target_fpr"]),
            uncertain_band=float(data["uncertain_band"]),
            window=int(data["window"]),
            ema_alpha=float(data["ema_alpha"]),
            videos=int(data["videos"]),
            real=int(data["real"]),
            fake=int(data["fake"]),
        )


def final_scores(
    videos: Sequence[LabelledVideo], stream: StreamStrategy, scoring: Scoring
) -> tuple[list[int], list[float]]:
    """(labels, scores): each video's Option B score at the end of its stream; videos never scored are left out."""
    labels: list[int] = []
    scores: list[float] = []
    for video in videos:
        decisions = replay_stream(video, stream, scoring)
        last = next((d.score for d in reversed(decisions) if d.score is not None), None)
        if last is not None:
            labels.append(video.label)
            scores.append(last)
    return labels, scores


def fit_per_frame_thresholds(
    videos: Sequence[LabelledVideo],
    stream: StreamStrategy,
    scoring: Scoring,
    target_fpr: float,
    uncertain_band: float,
) -> PerFrameThresholds:
    """Option B (t_low, t_high) for ``stream``'s averaging: at most ``target_fpr`` of the real videos end above
    t_high, about ``uncertain_band`` of all videos end in the band. ValueError without real videos scored."""
    if stream.kind is not StreamStrategyKind.PER_FRAME:
        raise ValueError(f"thresholds are fitted for the per_frame strategy, got {stream.kind.value!r}")
    if not (math.isfinite(target_fpr) and 0.0 < target_fpr < 1.0):
        raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
    if not (math.isfinite(uncertain_band) and 0.0 <= uncertain_band < 1.0):
        raise ValueError(f"uncertain_band must be in [0, 1), got {uncertain_band}")
    labels, scores = final_scores(videos, stream, scoring)
    if not any(y == 0 for y in labels):
        raise ValueError("fitting Option B thresholds needs real videos with a decision at the end of the stream")
    t_low, t_high = choose_thresholds(labels, scores, target_fpr, uncertain_band)
    fake = sum(labels)
    return PerFrameThresholds(
        averaging=stream.averaging,
        t_low=t_low,
        t_high=t_high,
        target_fpr=target_fpr,
        uncertain_band=uncertain_band,
        window=stream.window,
        ema_alpha=stream.ema_alpha,
        videos=len(labels),
        real=len(labels) - fake,
        fake=fake,
    )


def stored_per_frame_thresholds(thresholds_column: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """A calibration version's fitted Option B (t_low, t_high) by averaging, from its ``thresholds`` JSON."""
    entries = thresholds_column.get(PER_FRAME_KEY) or {}
    return {
        averaging: (float(entry["t_low"]), float(entry["t_high"]))
        for averaging, entry in entries.items()
        if averaging in {a.value for a in StreamAveraging}
    }


def with_per_frame_thresholds(thresholds_column: Mapping[str, Any], fitted: PerFrameThresholds) -> dict[str, Any]:
    """The ``thresholds`` JSON with ``fitted`` stored (replacing an earlier fit for the same averaging)."""
    entries = dict(thresholds_column.get(PER_FRAME_KEY) or {})
    entries[fitted.averaging.value] = dict(fitted.to_dict())
    return {**thresholds_column, PER_FRAME_KEY: entries}
