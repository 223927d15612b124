import numpy as np
import pytest

from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec
from core.streams.simulate import Candidate, LabelledVideo, Scoring, VideoFrame, simulate_one
from core.streams.strategy import StreamStrategy
from core.streams.thresholds import (
    PerFrameThresholds,
    fit_per_frame_thresholds,
    stored_per_frame_thresholds,
    with_per_frame_thresholds,
)
from core.vocabulary import StreamAveraging, StreamStrategyKind

NO_CALIBRATION = CalibrationState(version=None, calibrators={}, feedback_weights={}, reliable_models=frozenset())
# The pack's thresholds are far off for these scores: Option B needs its own.
SCORING = Scoring(
    members=(MemberSpec("a", "topk:2", 1.0), MemberSpec("b", "mean", 1.0)),
    fusion=FusionSpec(method="noisy_or", t_low=0.9967, t_high=0.998248, min_models=2),
    calibration=NO_CALIBRATION,
)
OPTION_B = StreamStrategy(StreamStrategyKind.PER_FRAME, window=8, hysteresis=0.0)


def synthetic(n_per_class: int, seed: int) -> list[LabelledVideo]:
    """Videos of 12 frames at 2 fps; per frame each member's P(fake) is noisy around a per-video level that is
    higher for fakes, so the classes overlap and no threshold separates them."""
    rng = np.random.default_rng(seed)
    videos = []
    for i in range(2 * n_per_class):
        label = i % 2
        level = rng.normal(0.6 if label else 0.35, 0.12)
        frames = [
            VideoFrame(k / 2.0, {0: {m: float(np.clip(level + rng.normal(0, 0.1), 0, 1)) for m in ("a", "b")}})
            for k in range(12)
        ]
        videos.append(LabelledVideo(f"v{i:03d}", label, frames))
    return videos


def test_the_fit_hits_the_target_fpr_and_the_simulator_confirms_it() -> None:
    videos = synthetic(100, seed=3)
    fitted = fit_per_frame_thresholds(videos, OPTION_B, SCORING, target_fpr=0.05, uncertain_band=0.1)
    assert (fitted.videos, fitted.real, fitted.fake) == (200, 100, 100)
    assert fitted.t_low < fitted.t_high < SCORING.fusion.t_low  # far below the pack's

    with_fit = Scoring(SCORING.members, SCORING.fusion, SCORING.calibration, {"mean": (fitted.t_low, fitted.t_high)})
    result = simulate_one(Candidate.of("b", OPTION_B), videos, with_fit)
    # floor(0.05 × 100) = 5 reals end above T_high: the FPR is the target exactly (no hysteresis here).
    assert result.fpr == pytest.approx(0.05)
    assert result.uncertain_rate == pytest.approx(0.1, abs=0.02)
    assert result.tpr is not None and result.tpr > 0.5
    # Under the pack's thresholds nearly everything is REAL: TPR collapses.
    assert simulate_one(Candidate.of("b", OPTION_B), videos, SCORING).tpr == pytest.approx(0.0, abs=0.02)

    held_out = simulate_one(Candidate.of("b", OPTION_B), synthetic(100, seed=4), with_fit)
    assert held_out.fpr == pytest.approx(0.05, abs=0.04)


def test_fit_refuses_what_it_cannot_fit() -> None:
    fakes = [v for v in synthetic(5, seed=1) if v.label == 1]
    with pytest.raises(ValueError, match="needs real videos"):
        fit_per_frame_thresholds(fakes, OPTION_B, SCORING, 0.05, 0.05)
    with pytest.raises(ValueError, match="per_frame"):
        fit_per_frame_thresholds(synthetic(5, 1), StreamStrategy(StreamStrategyKind.WINDOW), SCORING, 0.05, 0.05)
    with pytest.raises(ValueError, match="target_fpr"):
        fit_per_frame_thresholds(synthetic(5, 1), OPTION_B, SCORING, 1.5, 0.05)


def test_thresholds_are_stored_per_averaging_beside_the_versions_own() -> None:
    column = {"t_low": 0.99, "t_high": 0.995, "by_method": {}}
    mean = PerFrameThresholds(StreamAveraging.MEAN, 0.2, 0.4, 0.05, 0.05, 27, 0.3, 10, 5, 5)
    ema = PerFrameThresholds(StreamAveraging.EMA, 0.25, 0.5, 0.05, 0.05, 27, 0.3, 10, 5, 5)
    stored = with_per_frame_thresholds(with_per_frame_thresholds(column, mean), ema)
    assert stored["t_low"] == 0.99 and column == {"t_low": 0.99, "t_high": 0.995, "by_method": {}}
    assert stored_per_frame_thresholds(stored) == {"mean": (0.2, 0.4), "ema": (0.25, 0.5)}
    assert PerFrameThresholds.from_dict(stored["per_frame"]["ema"]) == ema
    refit = PerFrameThresholds(StreamAveraging.MEAN, 0.1, 0.3, 0.05, 0.05, 27, 0.3, 12, 6, 6)
    assert stored_per_frame_thresholds(with_per_frame_thresholds(stored, refit))["mean"] == (0.1, 0.3)
    assert stored_per_frame_thresholds(column) == {}
