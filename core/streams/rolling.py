"""A live stream's frames -> a rolling REAL / FAKE / UNCERTAIN decision, one frame at a time.

Option A ("window") keeps the last N frames with a face and scores them as a whole video is scored
(core.scoring.verdict.score_video: each member's aggregator, calibration, fusion, the real-evidence cap).
Option B ("per_frame") scores each frame alone the same way, then averages the fused scores over time (the mean
of the last N, or an EMA). Frames without a face change nothing: the window keeps its faces and the verdict holds.

The verdict moves only when the score passes a threshold by the strategy's hysteresis (a logit margin), so a score
hovering at a threshold does not flip it on every frame. Everything is a pure function of the frames pushed, in
order: replaying them into a new decider gives the same decisions, which is how a worker takes a session over.
"""

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from types import MappingProxyType

from core.scoring.calibration import expit
from core.scoring.decision import decide
from core.scoring.fusion import NotEnoughModels
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.streams.strategy import StreamStrategy
from core.vocabulary import StreamAveraging, StreamStrategyKind, Verdict

_TRACK = 0  # a stream frame carries its most-fake face only: one track


@dataclass(frozen=True)
class StreamFrame:
    """One frame: each member's P(fake) for its most-fake face; an empty mapping = no face in the frame."""

    t: float
    scores: Mapping[str, float]

    def __post_init__(self) -> None:
        if not math.isfinite(self.t):
            raise ValueError(f"frame time must be finite, got {self.t}")
        for name, p in self.scores.items():
            if not (math.isfinite(p) and 0.0 <= p <= 1.0):
                raise ValueError(f"P(fake) of {name!r} must be in [0, 1], got {p}")
        object.__setattr__(self, "scores", MappingProxyType(dict(self.scores)))


@dataclass(frozen=True)
class StreamDecision:
    """The decision after one frame. ``score`` None until enough frames with a face (or working models) have
    been seen; ``verdict`` None until the first decision; ``changed`` True when this frame changed the verdict
    (the first decision included)."""

    t: float
    frames_seen: int
    frames_with_face: int
    score: float | None
    verdict: Verdict | None
    changed: bool


def _shift(threshold: float, margin: float) -> float:
    """``threshold`` moved by ``margin`` in logit units; 0 and 1 stay where they are."""
    if threshold <= 0.0 or threshold >= 1.0:
        return threshold
    return expit(math.log(threshold / (1.0 - threshold)) + margin)


def hysteresis_thresholds(current: Verdict | None, t_low: float, t_high: float, margin: float) -> tuple[float, float]:
    """The thresholds that apply while ``current`` stands: the ones bounding its region move away from it by
    ``margin`` (logit), so leaving it takes a score past the threshold by the margin."""
    if current is Verdict.REAL:
        return _shift(t_low, margin), _shift(t_high, margin)
    if current is Verdict.FAKE:
        return _shift(t_low, -margin), _shift(t_high, -margin)
    if current is Verdict.UNCERTAIN:
        return _shift(t_low, -margin), _shift(t_high, margin)
    return t_low, t_high


def resolve_thresholds(
    strategy: StreamStrategy, fusion: FusionSpec, per_frame_thresholds: tuple[float, float] | None
) -> tuple[float, float]:
    """The (t_low, t_high) a strategy decides with: its own if set; else for Option A the pack's / calibration
    version's (``fusion``); for Option B the version's fitted Option B thresholds, else the pack's (which were
    validated on whole videos, not on per-frame averages: fit Option B's with the simulator)."""
    if strategy.thresholds is not None:
        return strategy.thresholds
    if strategy.kind is StreamStrategyKind.PER_FRAME and per_frame_thresholds is not None:
        return per_frame_thresholds
    return fusion.t_low, fusion.t_high


def most_fake_face(
    faces: Mapping[int, Mapping[str, float]],
    members: Sequence[MemberSpec],
    fusion: FusionSpec,
    calibration: CalibrationState,
) -> Mapping[str, float]:
    """The per-member scores of a frame's most-fake face (``faces``: track id -> member -> P(fake)), chosen as
    score_video chooses a video's worst track; ``{}`` when the frame has no face. When no face has enough
    members to fuse, the face with the highest single score stands in (the decider then finds too few and holds)."""
    if len(faces) <= 1:
        return next(iter(faces.values()), {})
    names = {m.name for m in members}
    unknown = sorted({name for scores in faces.values() for name in scores} - names)
    if unknown:
        raise ValueError(f"frame scores for models that are not ensemble members: {unknown}")
    scored = {name for scores in faces.values() for name in scores}
    # score_video needs every working member on every track: compare the faces all of them scored.
    complete = sorted(tid for tid, scores in faces.items() if set(scores) == scored)
    failed = {name: "no score in this frame" for name in names - scored}
    if complete:
        track_scores = {name: {tid: [faces[tid][name]] for tid in complete} for name in scored}
        try:
            return faces[score_video(track_scores, members, fusion, calibration, failed_models=failed).worst_track]
        except NotEnoughModels:
            pass
    return faces[max(sorted(faces), key=lambda tid: max(faces[tid].values(), default=0.0))]


class RollingDecider:
    """Push frames in time order; each push returns the decision after that frame."""

    def __init__(
        self,
        strategy: StreamStrategy,
        members: Sequence[MemberSpec],
        fusion: FusionSpec,
        calibration: CalibrationState,
        per_frame_thresholds: tuple[float, float] | None = None,
    ) -> None:
        names = {m.name for m in members}
        unknown = sorted(set(strategy.aggregators) - names)
        if unknown:
            raise ValueError(f"aggregator overrides for models that are not ensemble members: {unknown}")
        self.strategy = strategy
        self.members = tuple(replace(m, aggregator=strategy.aggregators.get(m.name, m.aggregator)) for m in members)
        self.fusion = fusion
        self.calibration = calibration
        self.t_low, self.t_high = resolve_thresholds(strategy, fusion, per_frame_thresholds)
        self._names = frozenset(names)
        # Option A: the window's frames; Option B "mean": the window's fused scores.
        self._frames: deque[Mapping[str, float]] = deque(maxlen=strategy.window)
        self._fused: deque[float] = deque(maxlen=strategy.window)
        self._ema: float | None = None
        self._ema_frames = 0
        self._seen = 0
        self._with_face = 0
        self._score: float | None = None
        self._verdict: Verdict | None = None

    def push(self, frame: StreamFrame) -> StreamDecision:
        unknown = sorted(set(frame.scores) - self._names)
        if unknown:
            raise ValueError(f"frame scores for models that are not ensemble members: {unknown}")
        self._seen += 1
        changed = False
        if frame.scores:
            self._with_face += 1
            self._score = self._window_score(frame) if self._is_window else self._per_frame_score(frame)
            if self._score is not None:
                t_low, t_high = hysteresis_thresholds(self._verdict, self.t_low, self.t_high, self.strategy.hysteresis)
                verdict = decide(self._score, t_low, t_high)
                changed = verdict is not self._verdict
                self._verdict = verdict
        return StreamDecision(frame.t, self._seen, self._with_face, self._score, self._verdict, changed)

    @property
    def _is_window(self) -> bool:
        return self.strategy.kind is StreamStrategyKind.WINDOW

    def _fused_score(self, scores: Mapping[str, Sequence[float]]) -> float | None:
        """score_video over one track; None when too few members have scores to fuse."""
        failed = {m.name: "no frame score in the stream window" for m in self.members if m.name not in scores}
        try:
            video = score_video(
                {name: {_TRACK: s} for name, s in scores.items()},
                self.members,
                self.fusion,
                self.calibration,
                failed_models=failed,
            )
        except NotEnoughModels:
            return None
        return video.score

    def _window_score(self, frame: StreamFrame) -> float | None:
        self._frames.append(frame.scores)
        if len(self._frames) < self.strategy.frames_needed:
            return None
        per_member: dict[str, list[float]] = {}
        for scores in self._frames:
            for name, p in scores.items():
                per_member.setdefault(name, []).append(p)
        return self._fused_score(per_member)

    def _per_frame_score(self, frame: StreamFrame) -> float | None:
        fused = self._fused_score({name: [p] for name, p in frame.scores.items()})
        if fused is not None:
            if self.strategy.averaging is StreamAveraging.EMA:
                alpha = self.strategy.ema_alpha
                self._ema = fused if self._ema is None else alpha * fused + (1.0 - alpha) * self._ema
                self._ema_frames += 1
            else:
                self._fused.append(fused)
        if self.strategy.averaging is StreamAveraging.EMA:
            return self._ema if self._ema_frames >= self.strategy.frames_needed else None
        if len(self._fused) < self.strategy.frames_needed:
            return None
        return math.fsum(self._fused) / len(self._fused)
