from collections.abc import Sequence

import pytest

from core.scoring.calibration import IsotonicCalibrator
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.streams.rolling import RollingDecider, StreamDecision, StreamFrame, hysteresis_thresholds
from core.streams.strategy import DEFAULT_PER_FRAME_MIN_FRAMES, StreamStrategy
from core.vocabulary import StreamAveraging, StreamStrategyKind, Verdict

ONE = [MemberSpec("a", "mean", 1.0)]
TWO = [MemberSpec("a", "topk:2", 1.0), MemberSpec("b", "max", 1.0)]
HALF = FusionSpec(method="weighted_average", t_low=0.5, t_high=0.5, min_models=1)
BAND = FusionSpec(method="weighted_average", t_low=0.3, t_high=0.7, min_models=1)
NO_CALIBRATION = CalibrationState(version=None, calibrators={}, feedback_weights={}, reliable_models=frozenset())


def frames(values: Sequence[float | None], fps: float = 2.0) -> list[StreamFrame]:
    """One member "a"; None = no face in that frame."""
    return [StreamFrame(i / fps, {} if v is None else {"a": v}) for i, v in enumerate(values)]


def run(decider: RollingDecider, stream: list[StreamFrame]) -> list[StreamDecision]:
    return [decider.push(f) for f in stream]


def per_frame(
    averaging: StreamAveraging,
    window: int = 27,
    ema_alpha: float = 0.3,
    hysteresis: float = 0.0,
    min_frames: int | None = None,
) -> StreamStrategy:
    return StreamStrategy(
        StreamStrategyKind.PER_FRAME,
        window=window,
        averaging=averaging,
        ema_alpha=ema_alpha,
        hysteresis=hysteresis,
        min_frames=min_frames,
    )


def test_hysteresis_keeps_a_hovering_score_from_flipping() -> None:
    # The score alternates just either side of 0.5 (logit ±0.04): without a margin every frame flips.
    hovering = [0.49, 0.51] * 5
    bare = per_frame(StreamAveraging.EMA, ema_alpha=1.0, min_frames=1, hysteresis=0.0)
    damped = per_frame(StreamAveraging.EMA, ema_alpha=1.0, min_frames=1, hysteresis=0.2)

    undamped = run(RollingDecider(bare, ONE, HALF, NO_CALIBRATION), frames(hovering))
    assert [d.verdict for d in undamped] == [Verdict.REAL, Verdict.FAKE] * 5
    assert all(d.changed for d in undamped)

    held = run(RollingDecider(damped, ONE, HALF, NO_CALIBRATION), frames([*hovering, 0.6]))
    assert [d.verdict for d in held[:-1]] == [Verdict.REAL] * 10
    assert [d.changed for d in held[:-1]] == [True] + [False] * 9
    # logit(0.6) = 0.405 clears the 0.2 margin: the verdict moves at last.
    assert held[-1].verdict is Verdict.FAKE and held[-1].changed


def test_hysteresis_thresholds_move_away_from_the_current_verdict() -> None:
    lo, hi = 0.3, 0.7
    assert hysteresis_thresholds(None, lo, hi, 1.0) == (lo, hi)
    up_lo, up_hi = hysteresis_thresholds(Verdict.REAL, lo, hi, 1.0)
    down_lo, down_hi = hysteresis_thresholds(Verdict.FAKE, lo, hi, 1.0)
    wide_lo, wide_hi = hysteresis_thresholds(Verdict.UNCERTAIN, lo, hi, 1.0)
    assert up_lo > lo and up_hi > hi
    assert down_lo < lo and down_hi < hi
    assert wide_lo < lo and wide_hi > hi
    assert up_lo == pytest.approx(1.0 / (1.0 + (0.7 / 0.3) * 2.718281828459045**-1.0))
    # The ends of [0, 1] cannot move in logit space.
    assert hysteresis_thresholds(Verdict.REAL, 0.0, 1.0, 1.0) == (0.0, 1.0)


def test_window_mean_and_ema_respond_to_a_step_as_their_maths_says() -> None:
    # Real for 4 frames, then fake: the mean over 4 reaches 0.5 (UNCERTAIN at t_low = t_high) with 2 fakes
    # in the window and passes it with 3; the EMA moves sooner.
    step = [0.1] * 4 + [0.9] * 4
    mean = run(
        RollingDecider(
            per_frame(StreamAveraging.MEAN, window=4, min_frames=4, hysteresis=0.0), ONE, HALF, NO_CALIBRATION
        ),
        frames(step),
    )
    assert [d.score for d in mean[:3]] == [None] * 3
    assert [d.score for d in mean[3:]] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert [d.verdict for d in mean[3:]] == [Verdict.REAL, Verdict.REAL, Verdict.UNCERTAIN, Verdict.FAKE, Verdict.FAKE]

    ema = run(
        RollingDecider(
            per_frame(StreamAveraging.EMA, ema_alpha=0.5, min_frames=1, hysteresis=0.0), ONE, HALF, NO_CALIBRATION
        ),
        frames(step),
    )
    # 0.1 held, then each frame halves the distance to 0.9: 0.5, 0.7, 0.8, 0.85.
    assert [d.score for d in ema] == pytest.approx([0.1] * 4 + [0.5, 0.7, 0.8, 0.85])
    assert [d.verdict for d in ema][3:] == [Verdict.REAL, Verdict.UNCERTAIN, Verdict.FAKE, Verdict.FAKE, Verdict.FAKE]


def test_option_a_scores_the_window_as_a_whole_video_and_waits_for_it() -> None:
    a = [0.1, 0.2, 0.9, 0.95, 0.3, 0.2]
    b = [0.4, 0.1, 0.2, 0.3, 0.35, 0.1]
    stream = [StreamFrame(i * 0.5, {"a": pa, "b": pb}) for i, (pa, pb) in enumerate(zip(a, b, strict=True))]
    strategy = StreamStrategy(StreamStrategyKind.WINDOW, window=4, hysteresis=0.0)
    decisions = run(RollingDecider(strategy, TWO, BAND, NO_CALIBRATION), stream)

    # min_frames defaults to the whole window, as in training.
    assert [d.verdict for d in decisions[:3]] == [None] * 3
    for i in range(3, 6):
        window = {"a": {0: a[i - 3 : i + 1]}, "b": {0: b[i - 3 : i + 1]}}
        assert decisions[i].score == pytest.approx(score_video(window, TWO, BAND).score)
    # Frames 0..3: a topk:2 = 0.925, b max = 0.4 -> 0.6625 (UNCERTAIN).
    assert decisions[3].score == pytest.approx((0.925 + 0.4) / 2)
    assert decisions[3].verdict is Verdict.UNCERTAIN and decisions[3].changed
    assert decisions[3].t == 1.5


def test_option_a_applies_aggregator_overrides_and_calibration() -> None:
    calibration = CalibrationState(
        version="v1",
        calibrators={"a": IsotonicCalibrator(x=(0.0, 1.0), y=(0.0, 0.5))},
        feedback_weights={},
        reliable_models=frozenset(),
    )
    strategy = StreamStrategy(StreamStrategyKind.WINDOW, window=3, aggregators={"a": "mean"}, hysteresis=0.0)
    decider = RollingDecider(strategy, TWO, BAND, calibration)
    assert [m.aggregator for m in decider.members] == ["mean", "max"]
    last = run(decider, [StreamFrame(float(i), {"a": 0.6, "b": 0.2}) for i in range(3)])[-1]
    # a: mean 0.6 -> calibrated 0.3; b: max 0.2 -> (0.3 + 0.2) / 2.
    assert last.score == pytest.approx(0.25)
    assert last.verdict is Verdict.REAL


def test_no_face_frames_hold_the_decision_and_are_counted() -> None:
    strategy = per_frame(StreamAveraging.MEAN, window=3, min_frames=2, hysteresis=0.0)
    decisions = run(RollingDecider(strategy, ONE, HALF, NO_CALIBRATION), frames([None, 0.9, None, 0.8, None, None]))
    assert [(d.frames_seen, d.frames_with_face) for d in decisions] == [(1, 0), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
    assert [d.verdict for d in decisions] == [None, None, None, Verdict.FAKE, Verdict.FAKE, Verdict.FAKE]
    assert [d.changed for d in decisions] == [False, False, False, True, False, False]
    assert decisions[-1].score == pytest.approx(0.85)


def test_a_member_missing_from_frames_is_left_out_until_too_few_remain() -> None:
    fusion = FusionSpec(method="weighted_average", t_low=0.5, t_high=0.5, min_models=2)
    strategy = per_frame(StreamAveraging.EMA, ema_alpha=1.0, min_frames=1, hysteresis=0.0)
    decider = RollingDecider(strategy, TWO, fusion, NO_CALIBRATION)
    first = decider.push(StreamFrame(0.0, {"a": 0.9, "b": 0.7}))
    assert first.score == pytest.approx(0.8) and first.verdict is Verdict.FAKE
    # One member is not enough to fuse: no new score, the verdict holds.
    second = decider.push(StreamFrame(0.5, {"a": 0.1}))
    assert second.score == pytest.approx(0.8) and second.verdict is Verdict.FAKE and not second.changed


def test_replaying_the_same_frames_gives_the_same_decisions() -> None:
    values: list[float | None] = [0.2, 0.7, None, 0.45, 0.55, 0.9, 0.1, None, 0.6, 0.52]
    for strategy in (
        StreamStrategy(StreamStrategyKind.WINDOW, window=3),
        per_frame(StreamAveraging.MEAN, window=4, min_frames=2),
        per_frame(StreamAveraging.EMA, min_frames=1),
    ):
        first = run(RollingDecider(strategy, ONE, BAND, NO_CALIBRATION), frames(values))
        again = run(RollingDecider(strategy, ONE, BAND, NO_CALIBRATION), frames(values))
        assert first == again


def test_thresholds_come_from_the_strategy_then_the_fitted_option_b_ones_then_the_pack() -> None:
    window = StreamStrategy(StreamStrategyKind.WINDOW)
    option_b = StreamStrategy(StreamStrategyKind.PER_FRAME)
    explicit = StreamStrategy(StreamStrategyKind.PER_FRAME, t_low=0.2, t_high=0.4)
    fitted = (0.1, 0.9)
    assert RollingDecider(window, ONE, BAND, NO_CALIBRATION, fitted).t_low == 0.3
    assert RollingDecider(option_b, ONE, BAND, NO_CALIBRATION, fitted).t_high == 0.9
    assert RollingDecider(option_b, ONE, BAND, NO_CALIBRATION).t_high == 0.7
    assert RollingDecider(explicit, ONE, BAND, NO_CALIBRATION, fitted).t_low == 0.2


def test_unknown_members_are_refused() -> None:
    with pytest.raises(ValueError, match="not ensemble members"):
        RollingDecider(StreamStrategy(StreamStrategyKind.WINDOW, aggregators={"zz": "mean"}), ONE, BAND, NO_CALIBRATION)
    decider = RollingDecider(StreamStrategy(StreamStrategyKind.WINDOW), ONE, BAND, NO_CALIBRATION)
    with pytest.raises(ValueError, match="not ensemble members"):
        decider.push(StreamFrame(0.0, {"zz": 0.5}))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        StreamFrame(0.0, {"a": 1.5})


def test_strategy_round_trips_and_defaults() -> None:
    strategy = StreamStrategy.from_mapping({"kind": "per_frame", "averaging": "ema", "ema_alpha": 0.5})
    assert strategy.frames_needed == DEFAULT_PER_FRAME_MIN_FRAMES
    assert StreamStrategy.from_mapping(dict(strategy.to_dict())) == strategy
    window = StreamStrategy.from_mapping(
        {"kind": "window", "aggregators": {"a": "softmax:5"}, "t_low": 0.1, "t_high": 0.2}
    )
    assert window.frames_needed == 27 and window.thresholds == (0.1, 0.2) and window.fps == 2.0
    assert StreamStrategy.from_mapping(dict(window.to_dict())) == window


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "needs a kind"),
        ({"kind": "sliding"}, "kind must be one of"),
        ({"kind": "window", "colour": "red"}, "unknown stream strategy field"),
        ({"kind": "window", "fps": 0}, "fps must be in"),
        ({"kind": "window", "fps": "fast"}, "fps must be a number"),
        ({"kind": "window", "window": 2.5}, "window must be an integer"),
        ({"kind": "window", "window": 0}, "window must be between"),
        ({"kind": "window", "window": True}, "window must be an integer"),
        ({"kind": "window", "aggregators": {"a": "top"}}, "aggregator of 'a'"),
        ({"kind": "window", "aggregators": ["mean"]}, "aggregators must map"),
        ({"kind": "per_frame", "averaging": "median"}, "averaging must be one of"),
        ({"kind": "per_frame", "ema_alpha": 0}, "ema_alpha must be in"),
        ({"kind": "window", "t_low": 0.2}, "give both t_low and t_high"),
        ({"kind": "window", "t_low": 0.8, "t_high": 0.2}, "t_low <= t_high"),
        ({"kind": "window", "hysteresis": -1}, "hysteresis must be"),
        ({"kind": "window", "min_frames": 0}, "min_frames must be >= 1"),
        ({"kind": "window", "window": 5, "min_frames": 6}, "cannot exceed the window"),
        ({"kind": "window", "fps": float("nan")}, "fps must be finite"),
    ],
)
def test_bad_strategies_are_refused_with_the_field_named(data: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StreamStrategy.from_mapping(data)


def test_ema_min_frames_may_exceed_the_window() -> None:
    strategy = StreamStrategy.from_mapping({"kind": "per_frame", "averaging": "ema", "window": 3, "min_frames": 8})
    assert strategy.frames_needed == 8
