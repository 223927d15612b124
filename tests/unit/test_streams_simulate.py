from collections.abc import Sequence

import pytest

from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec
from core.streams.simulate import (
    FLIP_LIMIT,
    Candidate,
    LabelledVideo,
    Scoring,
    VideoFrame,
    default_candidates,
    latency_budget,
    resample,
    simulate,
    simulate_one,
    stream_frames,
)
from core.streams.strategy import StreamStrategy
from core.vocabulary import StreamAveraging, StreamStrategyKind, Verdict

NO_CALIBRATION = CalibrationState(version=None, calibrators={}, feedback_weights={}, reliable_models=frozenset())
SCORING = Scoring(
    members=(MemberSpec("a", "mean", 1.0),),
    fusion=FusionSpec(method="weighted_average", t_low=0.3, t_high=0.7, min_models=1),
    calibration=NO_CALIBRATION,
)
WINDOW_4 = Candidate.of("a", StreamStrategy(StreamStrategyKind.WINDOW, window=4, hysteresis=0.0))
FLICKER = Candidate.of(
    "flicker",
    StreamStrategy(
        StreamStrategyKind.PER_FRAME, averaging=StreamAveraging.EMA, ema_alpha=1.0, min_frames=1, hysteresis=0
    ),
)


def video(video_id: str, label: int, scores: Sequence[float | None], fps: float = 2.0) -> LabelledVideo:
    """Member "a" on one face per frame at ``fps``; None = no face in that frame."""
    frames = [VideoFrame(i / fps, {} if s is None else {0: {"a": s}}) for i, s in enumerate(scores)]
    return LabelledVideo(video_id, label, frames)


def test_times_to_first_and_stable_decision_and_flips_are_counted_in_stream_time() -> None:
    # FAKE from the 4th frame (the window is full at t = 1.5 s, i.e. 2.0 s into the stream), then the score
    # drops: the window mean is 0.5 (UNCERTAIN) at frame 6 and 0.25 (REAL) at frame 7.
    scores = [1.0] * 5 + [0.0] * 5
    result = simulate_one(WINDOW_4, [video("v", 1, scores)], SCORING)
    out = result.outcomes[0]
    assert [p.verdict for p in out.timeline][3:] == [Verdict.FAKE] * 3 + [Verdict.UNCERTAIN] + [Verdict.REAL] * 3
    assert out.first_decision_s == pytest.approx(2.0)
    assert out.stable_s == pytest.approx(4.0)  # the change at t = 3.5 s
    assert out.flips == 2
    assert out.final is Verdict.REAL and out.ever_fake
    assert result.mean_first_decision_s == pytest.approx(2.0) and result.max_flips == 2


def test_rates_are_of_final_verdicts() -> None:
    videos = [
        video("fake-caught", 1, [0.9] * 6),
        video("fake-uncertain", 1, [0.5] * 6),
        video("real-ok", 0, [0.1] * 6),
        video("real-false-alarm", 0, [0.8] * 6),
        video("real-short", 0, [0.1] * 2),  # shorter than the window: never decided
    ]
    result = simulate_one(WINDOW_4, videos, SCORING)
    assert (result.videos, result.real, result.fake) == (5, 3, 2)
    assert result.tpr == pytest.approx(1 / 2)
    assert result.tnr == pytest.approx(1 / 3)
    assert result.fpr == pytest.approx(1 / 3)
    assert result.fpr_any_time == pytest.approx(1 / 3)
    assert result.uncertain_rate == pytest.approx(1 / 5)
    assert result.undecided_rate == pytest.approx(1 / 5)
    assert result.outcomes[-1].first_decision_s is None and result.outcomes[-1].final is None
    assert (result.t_low, result.t_high) == (0.3, 0.7)


def test_a_flickering_score_counts_flips_and_the_flip_limit() -> None:
    flicker = [0.1, 0.9] * 4
    result = simulate_one(FLICKER, [video("f", 1, flicker), video("calm", 0, [0.1] * 8)], SCORING)
    assert [o.flips for o in result.outcomes] == [7, 0]
    assert result.mean_flips == pytest.approx(3.5)
    assert result.videos_over_flip_limit == 1 and FLIP_LIMIT == 5
    assert result.fpr == 0.0 and result.tpr == 1.0


def test_whole_file_decides_once_at_the_end_over_every_frame() -> None:
    whole = Candidate("whole", None, 2.0)
    result = simulate_one(whole, [video("v", 1, [0.2, 0.9, 0.9, 0.9, None, 0.9])], SCORING)
    out = result.outcomes[0]
    # mean(0.2, 0.9, 0.9, 0.9, 0.9) = 0.76 over the frames with a face, decided when the last frame is in.
    assert out.timeline[-1].score == pytest.approx(0.76)
    assert [p.verdict for p in out.timeline] == [None] * 5 + [Verdict.FAKE]
    assert out.first_decision_s == out.stable_s == pytest.approx(3.0)
    assert out.flips == 0


def test_resample_keeps_frames_at_the_stream_rate() -> None:
    frames = [VideoFrame(i / 10, {0: {"a": 0.5}}) for i in range(21)]  # 10 fps for 2 s
    assert [round(f.t, 3) for f in resample(frames, 2.0)] == [0.0, 0.5, 1.0, 1.5, 2.0]
    # Fixed-rate sampling floors to source frames (25 fps): every sample is still the one on screen at its tick.
    floored = [VideoFrame(t, {0: {"a": 0.5}}) for t in (0.0, 0.48, 1.0, 1.48, 2.0)]
    assert resample(floored, 2.0) == floored
    # A sparser source keeps everything it has; a gap (no face) is skipped, not filled.
    assert len(resample(frames[::5], 4.0)) == 5
    gap = [VideoFrame(t, {0: {"a": 0.5}}) for t in (0.0, 0.5, 30.0, 30.5)]
    assert resample(gap, 2.0) == gap


def test_the_most_fake_face_of_a_frame_is_what_a_stream_sends() -> None:
    frame = VideoFrame(0.0, {0: {"a": 0.2}, 1: {"a": 0.8}, 2: {"a": 0.4}})
    assert [dict(f.scores) for f in stream_frames([frame, VideoFrame(0.5, {})], SCORING)] == [{"a": 0.8}, {}]


def test_fitted_option_b_thresholds_are_used_by_averaging() -> None:
    fitted = Scoring(SCORING.members, SCORING.fusion, SCORING.calibration, {"ema": (0.05, 0.15)})
    result = simulate_one(FLICKER, [video("r", 0, [0.1] * 4)], fitted)
    assert (result.t_low, result.t_high) == (0.05, 0.15)
    assert result.outcomes[0].final is Verdict.UNCERTAIN
    mean = Candidate.of("mean", StreamStrategy(StreamStrategyKind.PER_FRAME, min_frames=1))
    assert (simulate_one(mean, [], fitted).t_low, simulate_one(mean, [], fitted).t_high) == (0.3, 0.7)


def test_latency_budget_warns_over_200_ms_and_over_the_frame_interval() -> None:
    assert latency_budget(2.0, None).warnings == ()
    assert latency_budget(2.0, 150.0).frame_budget_ms == 500.0 and latency_budget(2.0, 150.0).warnings == ()
    over_limit = latency_budget(2.0, 250.0).warnings
    assert len(over_limit) == 1 and "200 ms" in over_limit[0]
    assert len(latency_budget(4.0, 300.0).warnings) == 2


def test_simulate_compares_the_default_strategies_side_by_side() -> None:
    videos = [video(f"f{i}", 1, [0.95] * 30) for i in range(3)] + [video(f"r{i}", 0, [0.05] * 30) for i in range(3)]
    report = simulate(videos, default_candidates(), SCORING, per_frame_ms=120.0)
    assert [s.name for s in report.strategies] == ["option_a", "option_b", "whole_file"]
    assert (report.videos, report.real, report.fake) == (6, 3, 3)
    for strategy in report.strategies:
        assert (strategy.tpr, strategy.tnr, strategy.fpr) == (1.0, 1.0, 0.0)
    first = {s.name: s.mean_first_decision_s for s in report.strategies}
    # Option A waits for its 27 frames, Option B for 10, the whole file for all 30.
    assert first == pytest.approx({"option_a": 13.5, "option_b": 5.0, "whole_file": 15.0})
    with pytest.raises(ValueError, match="unique"):
        simulate(videos, [WINDOW_4, WINDOW_4], SCORING)
    with pytest.raises(ValueError, match="differs"):
        Candidate("x", StreamStrategy(StreamStrategyKind.WINDOW, fps=4.0), 2.0)
