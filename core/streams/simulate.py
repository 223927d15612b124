"""Replay labelled videos' stored frame scores as live streams and measure how each strategy would have decided.

Seed 000 asks for this before going live: Option A (a window through the pack's own pipeline), Option B (per-frame
fusion averaged over time) and today's whole-file scoring, compared on TPR, TNR, FPR, the uncertain rate, the time
to a first and to a stable decision, flips per video and the latency budget. Pure: the caller loads the videos.

Times are stream times: a decision made on the frame at ``t`` is available ``t - t_first + 1/fps`` seconds into
the stream (the frames so far each cover 1/fps), so Option A's 27 frames at 2 fps take 13.5 s, as the seed says.
"""

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from core.scoring.fusion import NotEnoughModels
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.streams.rolling import RollingDecider, StreamDecision, StreamFrame, most_fake_face
from core.streams.strategy import DEFAULT_FPS, DEFAULT_WINDOW, StreamStrategy
from core.vocabulary import StreamAveraging, StreamStrategyKind, Verdict

LATENCY_LIMIT_MS = 200.0  # the seed's per-frame latency warning
FLIP_LIMIT = 5  # the seed's target: fewer than 5 flips per video
WHOLE_FILE = "whole_file"  # the strategy kind of today's scoring, beside the stream kinds
_TIME_SLACK = 1e-3  # stored timestamps are rounded to the millisecond


@dataclass(frozen=True)
class VideoFrame:
    """One sampled frame of a stored video: ``faces`` maps track id -> member -> P(fake); empty = no face."""

    t: float
    faces: Mapping[int, Mapping[str, float]]


@dataclass(frozen=True)
class LabelledVideo:
    """A video with its moderator (or CSV) label: 1 = FAKE, 0 = REAL."""

    video_id: str
    label: int
    frames: Sequence[VideoFrame]
    name: str | None = None

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"label of {self.video_id} must be 0 (REAL) or 1 (FAKE), got {self.label!r}")


@dataclass(frozen=True)
class Scoring:
    """What the videos are scored with: the members, the fusion (with the version's thresholds), the calibration
    version and its fitted Option B thresholds by averaging ("mean" / "ema")."""

    members: Sequence[MemberSpec]
    fusion: FusionSpec
    calibration: CalibrationState
    per_frame_thresholds: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Candidate:
    """One strategy under test: a stream strategy, or ``stream`` None for today's whole-file scoring at ``fps``."""

    name: str
    stream: StreamStrategy | None
    fps: float = DEFAULT_FPS

    def __post_init__(self) -> None:
        if self.stream is not None and self.stream.fps != self.fps:
            raise ValueError(f"{self.name}: fps {self.fps} differs from its stream strategy's {self.stream.fps}")
        if not (math.isfinite(self.fps) and self.fps > 0.0):
            raise ValueError(f"{self.name}: fps must be > 0, got {self.fps}")

    @property
    def kind(self) -> str:
        return WHOLE_FILE if self.stream is None else self.stream.kind.value

    @classmethod
    def of(cls, name: str, stream: StreamStrategy) -> "Candidate":
        return cls(name, stream, stream.fps)


def default_candidates(fps: float = DEFAULT_FPS, window: int = DEFAULT_WINDOW) -> list[Candidate]:
    """The seed's comparison: Option A (window), Option B (per-frame, mean over the window) and the whole file."""
    return [
        Candidate.of("option_a", StreamStrategy(StreamStrategyKind.WINDOW, fps=fps, window=window)),
        Candidate.of(
            "option_b",
            StreamStrategy(StreamStrategyKind.PER_FRAME, fps=fps, window=window, averaging=StreamAveraging.MEAN),
        ),
        Candidate(WHOLE_FILE, None, fps),
    ]


@dataclass(frozen=True)
class TimelinePoint:
    t: float
    score: float | None
    verdict: Verdict | None


@dataclass(frozen=True)
class VideoOutcome:
    """One video under one strategy. ``final`` None: never decided (e.g. shorter than the window). Times are
    stream seconds (see the module doc); ``stable_s`` is when the verdict last changed."""

    video_id: str
    name: str | None
    label: int
    frames: int
    final: Verdict | None
    first_decision_s: float | None
    stable_s: float | None
    flips: int
    ever_fake: bool
    timeline: tuple[TimelinePoint, ...]


@dataclass(frozen=True)
class LatencyBudget:
    """A frame's time budget at the strategy's fps, and the measured per-frame cost when one is known."""

    fps: float
    frame_budget_ms: float
    per_frame_ms: float | None
    limit_ms: float
    warnings: tuple[str, ...]


@dataclass(frozen=True)
class StrategyReport:
    """One strategy over every video. Rates are of final verdicts: ``tpr`` fakes called FAKE, ``tnr`` reals
    called REAL, ``fpr`` reals called FAKE (None without videos of that class); ``uncertain_rate`` and
    ``undecided_rate`` over all videos; ``fpr_any_time`` reals called FAKE at any moment (a live false alarm).
    Times are over the decided videos only (None when none was)."""

    name: str
    strategy: StreamStrategy | None
    fps: float
    t_low: float
    t_high: float
    videos: int
    real: int
    fake: int
    tpr: float | None
    tnr: float | None
    fpr: float | None
    fpr_any_time: float | None
    uncertain_rate: float
    undecided_rate: float
    mean_first_decision_s: float | None
    mean_stable_s: float | None
    mean_flips: float
    max_flips: int
    videos_over_flip_limit: int
    latency: LatencyBudget
    outcomes: tuple[VideoOutcome, ...]


@dataclass(frozen=True)
class SimulationReport:
    videos: int
    real: int
    fake: int
    flip_limit: int
    strategies: tuple[StrategyReport, ...]


def resample(frames: Sequence[VideoFrame], fps: float) -> list[VideoFrame]:
    """The frames a stream at ``fps`` would carry: at each tick k/fps from the first frame, the latest stored frame
    on screen by then (each used once). A tick with no new frame is skipped: that frame had no face, or the video
    was sampled more sparsely. The pipeline's fixed-rate sampling floors to source frames (0, 0.48, 1.0 s at 25 fps
    for 2 fps), so ticks, not gaps between kept frames, decide."""
    ordered = sorted(frames, key=lambda f: f.t)
    if not ordered:
        return []
    step = 1.0 / fps
    start = ordered[0].t
    kept: list[VideoFrame] = []
    i, tick = 0, 0
    while i < len(ordered):
        latest = None
        while i < len(ordered) and ordered[i].t <= start + tick * step + _TIME_SLACK:
            latest = ordered[i]
            i += 1
        if latest is not None:
            kept.append(latest)
        # Over a stretch without frames, jump to the tick before the next one.
        tick = tick + 1 if i == len(ordered) else max(tick + 1, math.floor((ordered[i].t - start) / step))
    return kept


def stream_frames(frames: Sequence[VideoFrame], scoring: Scoring) -> list[StreamFrame]:
    """Each frame as a stream sends it: the per-member scores of its most-fake face."""
    return [
        StreamFrame(f.t, most_fake_face(f.faces, scoring.members, scoring.fusion, scoring.calibration)) for f in frames
    ]


def decider(stream: StreamStrategy, scoring: Scoring) -> RollingDecider:
    return RollingDecider(
        stream,
        scoring.members,
        scoring.fusion,
        scoring.calibration,
        scoring.per_frame_thresholds.get(stream.averaging.value),
    )


def replay_stream(video: LabelledVideo, stream: StreamStrategy, scoring: Scoring) -> list[StreamDecision]:
    """The decisions a live session would have made on ``video`` at the strategy's fps."""
    rolling = decider(stream, scoring)
    return [rolling.push(f) for f in stream_frames(resample(video.frames, stream.fps), scoring)]


def _whole_file(video: LabelledVideo, fps: float, scoring: Scoring) -> list[StreamDecision]:
    """Today's scoring: nothing until the file ends, then score_video over every frame and face."""
    frames = resample(video.frames, fps)
    track_scores: dict[str, dict[int, list[float]]] = {}
    out: list[StreamDecision] = []
    with_face = 0
    for i, frame in enumerate(frames):
        with_face += bool(frame.faces)
        out.append(StreamDecision(frame.t, i + 1, with_face, None, None, False))
        for track_id, scores in frame.faces.items():
            for name, p in scores.items():
                track_scores.setdefault(name, {}).setdefault(track_id, []).append(p)
    score: float | None = None
    verdict: Verdict | None = None
    if track_scores:
        failed = {m.name: "no frame scores" for m in scoring.members if m.name not in track_scores}
        try:
            video_score = score_video(track_scores, scoring.members, scoring.fusion, scoring.calibration, failed)
            score, verdict = video_score.score, video_score.verdict
        except NotEnoughModels:
            pass
    if out:
        out[-1] = StreamDecision(frames[-1].t, len(frames), with_face, score, verdict, verdict is not None)
    return out


def outcome(video: LabelledVideo, decisions: Sequence[StreamDecision], fps: float) -> VideoOutcome:
    """Times, flips and the final verdict of one video's decisions."""
    changes = [d for d in decisions if d.changed]
    start = decisions[0].t if decisions else 0.0

    def stream_time(d: StreamDecision) -> float:
        return d.t - start + 1.0 / fps

    return VideoOutcome(
        video_id=video.video_id,
        name=video.name,
        label=video.label,
        frames=len(decisions),
        final=decisions[-1].verdict if decisions else None,
        first_decision_s=stream_time(changes[0]) if changes else None,
        stable_s=stream_time(changes[-1]) if changes else None,
        flips=max(len(changes) - 1, 0),
        ever_fake=any(d.verdict is Verdict.FAKE for d in decisions),
        timeline=tuple(TimelinePoint(d.t, d.score, d.verdict) for d in decisions),
    )


def latency_budget(fps: float, per_frame_ms: float | None) -> LatencyBudget:
    budget = 1000.0 / fps
    warnings: list[str] = []
    if per_frame_ms is not None and per_frame_ms > LATENCY_LIMIT_MS:
        warnings.append(f"{per_frame_ms:.0f} ms per frame is over the {LATENCY_LIMIT_MS:.0f} ms per-frame limit")
    if per_frame_ms is not None and per_frame_ms > budget:
        warnings.append(
            f"{per_frame_ms:.0f} ms per frame exceeds the {budget:.0f} ms between frames at {fps:g} fps: "
            "one worker cannot keep up with one stream, so frames will be dropped"
        )
    return LatencyBudget(fps, budget, per_frame_ms, LATENCY_LIMIT_MS, tuple(warnings))


def _rate(hits: int, n: int) -> float | None:
    return hits / n if n else None


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.fmean(known) if known else None


def report(
    candidate: Candidate,
    outcomes: Sequence[VideoOutcome],
    thresholds: tuple[float, float],
    per_frame_ms: float | None = None,
) -> StrategyReport:
    """A strategy's metrics over its videos' outcomes."""
    reals = [o for o in outcomes if o.label == 0]
    fakes = [o for o in outcomes if o.label == 1]
    n = len(outcomes)
    flips = [o.flips for o in outcomes]
    return StrategyReport(
        name=candidate.name,
        strategy=candidate.stream,
        fps=candidate.fps,
        t_low=thresholds[0],
        t_high=thresholds[1],
        videos=n,
        real=len(reals),
        fake=len(fakes),
        tpr=_rate(sum(o.final is Verdict.FAKE for o in fakes), len(fakes)),
        tnr=_rate(sum(o.final is Verdict.REAL for o in reals), len(reals)),
        fpr=_rate(sum(o.final is Verdict.FAKE for o in reals), len(reals)),
        fpr_any_time=_rate(sum(o.ever_fake for o in reals), len(reals)),
        uncertain_rate=sum(o.final is Verdict.UNCERTAIN for o in outcomes) / n if n else 0.0,
        undecided_rate=sum(o.final is None for o in outcomes) / n if n else 0.0,
        mean_first_decision_s=_mean([o.first_decision_s for o in outcomes]),
        mean_stable_s=_mean([o.stable_s for o in outcomes]),
        mean_flips=statistics.fmean(flips) if flips else 0.0,
        max_flips=max(flips, default=0),
        videos_over_flip_limit=sum(f >= FLIP_LIMIT for f in flips),
        latency=latency_budget(candidate.fps, per_frame_ms),
        outcomes=tuple(outcomes),
    )


def simulate_one(
    candidate: Candidate, videos: Sequence[LabelledVideo], scoring: Scoring, per_frame_ms: float | None = None
) -> StrategyReport:
    if candidate.stream is None:
        thresholds = (scoring.fusion.t_low, scoring.fusion.t_high)
        outcomes = [outcome(v, _whole_file(v, candidate.fps, scoring), candidate.fps) for v in videos]
    else:
        rolling = decider(candidate.stream, scoring)
        thresholds = (rolling.t_low, rolling.t_high)
        outcomes = [outcome(v, replay_stream(v, candidate.stream, scoring), candidate.fps) for v in videos]
    return report(candidate, outcomes, thresholds, per_frame_ms)


def simulate(
    videos: Sequence[LabelledVideo],
    candidates: Sequence[Candidate],
    scoring: Scoring,
    per_frame_ms: float | None = None,
) -> SimulationReport:
    """Every candidate over every video. ``per_frame_ms``: the measured cost of scoring one frame, if known."""
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"strategy names must be unique, got {names}")
    fake = sum(v.label for v in videos)
    return SimulationReport(
        videos=len(videos),
        real=len(videos) - fake,
        fake=fake,
        flip_limit=FLIP_LIMIT,
        strategies=tuple(simulate_one(c, videos, scoring, per_frame_ms) for c in candidates),
    )
