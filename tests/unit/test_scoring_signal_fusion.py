import json
import math

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from core.scoring.calibration import expit
from core.scoring.fusion import StackerParams, fit_stacker, fuse, stacker, uses_signals
from core.scoring.recalibration import recalibrate
from core.scoring.recalibration_config import RecalibrationConfig
from core.scoring.recalibration_steps import score_jobs
from core.scoring.recalibration_types import LabelledJob, Setup
from core.scoring.signal_features import MISSING_SUFFIX, SignalFeatures, fit_signal_features
from core.scoring.verdict import FusionSpec, MemberSpec, score_video
from core.signals import SignalReport, SignalSpec
from core.vocabulary import Verdict

NAN = math.nan
N = 80
RNG = np.random.default_rng(11)
LABELS = np.array([i % 2 for i in range(N)])
# One weak model, one signal that separates the classes, one that is noise and sometimes not computed.
MODELS = np.clip(0.5 + 0.1 * (LABELS - 0.5) + RNG.normal(scale=0.2, size=N), 0.0, 1.0).reshape(N, 1)
TELLING = 2.0 * LABELS + RNG.normal(scale=0.6, size=N)
NOISY = np.where(np.arange(N) % 4 == 0, NAN, RNG.normal(size=N))
SIGNALS = np.column_stack([TELLING, NOISY])
NAMES = ["telling", "noisy"]


def _values(i: int) -> dict[str, float]:
    return {"telling": float(TELLING[i]), "noisy": float(NOISY[i])}


def test_signal_features_impute_flag_and_standardise() -> None:
    features = fit_signal_features(SIGNALS, NAMES)
    assert features.indicators == ("noisy",)
    assert features.columns() == ("telling", "noisy", "noisy" + MISSING_SUFFIX)
    assert features.fill[1] == pytest.approx(float(np.nanmedian(NOISY)))
    derived = features.transform(SIGNALS)
    assert np.allclose(derived.mean(axis=0), 0.0) and np.allclose(derived.std(axis=0), 1.0)
    # A value not computed at inference is the training median with its flag set.
    row = features.row({"telling": 1.0})
    assert row[1] == pytest.approx((features.fill[1] - features.mean[1]) / features.scale[1])
    assert row[2] == pytest.approx((1.0 - features.mean[2]) / features.scale[2])
    assert SignalFeatures.from_dict(json.loads(json.dumps(features.to_dict()))) == features


def test_fit_with_signals_reproduces_at_inference_from_stored_params() -> None:
    params = fit_stacker(MODELS, LABELS, ["m"], signal_values=SIGNALS, signal_names=NAMES)
    assert params.signals is not None and set(params.signal_coef) == set(params.signals.columns())
    stored = StackerParams.from_dict(json.loads(json.dumps(params.to_dict())))
    assert stored == params and uses_signals(params.to_dict())

    # The same regression scikit-learn fits on the same derived columns, then the stored Platt sigmoid.
    derived = np.hstack([MODELS, params.signals.transform(SIGNALS)])
    reference = LogisticRegression(max_iter=1000).fit(derived, LABELS).decision_function(derived)
    assert params.calibration is not None
    for i in range(N):
        got = stacker({"m": float(MODELS[i, 0])}, stored, _values(i))
        assert got == stacker({"m": float(MODELS[i, 0])}, params, _values(i))
        assert got == pytest.approx(params.calibration.apply(float(reference[i])), abs=1e-9)


def test_the_signals_carry_the_fit_when_the_models_are_weak() -> None:
    params = fit_stacker(MODELS, LABELS, ["m"], signal_values=SIGNALS, signal_names=NAMES)
    assert abs(params.signal_coef["telling"]) > max(abs(params.coef["m"]), abs(params.signal_coef["noisy"]))
    assert params.signal_coef["telling"] > 0  # higher means fake here
    low = stacker({"m": 0.5}, params, {"telling": -1.0, "noisy": 0.0})
    high = stacker({"m": 0.5}, params, {"telling": 3.0, "noisy": 0.0})
    assert low < 0.5 < high


def test_a_stacker_without_signals_ignores_them_and_keeps_its_stored_form() -> None:
    params = fit_stacker(MODELS, LABELS, ["m"])
    assert params.signals is None and "signals" not in params.to_dict() and not uses_signals(params.to_dict())
    assert stacker({"m": 0.3}, params, {"telling": 5.0}) == stacker({"m": 0.3}, params)
    z = params.intercept + params.coef["m"] * 0.3
    assert params.calibration is not None
    assert fuse("stacker", {"m": 0.3}, {}, params.to_dict(), 1) == params.calibration.apply(z)
    assert expit(z) == stacker({"m": 0.3}, StackerParams(params.coef, params.intercept, None))


MEMBERS = [MemberSpec("m", "mean", 1.0)]


def test_score_video_feeds_signals_to_a_stacker_fitted_with_them() -> None:
    params = fit_stacker(MODELS, LABELS, ["m"], signal_values=SIGNALS, signal_names=NAMES)
    fusion = FusionSpec("stacker", 0.3, 0.7, 1, params.to_dict())
    frames = {"m": {0: [0.5, 0.5]}}
    fake_like = score_video(frames, MEMBERS, fusion, signals=SignalReport({"telling": 3.0, "noisy": 0.0}))
    real_like = score_video(frames, MEMBERS, fusion, signals=SignalReport({"telling": -1.0, "noisy": 0.0}))
    without = score_video(frames, MEMBERS, fusion)
    assert real_like.score < without.score < fake_like.score
    assert without.score == stacker({"m": 0.5}, params)  # no report: every signal imputed
    assert fake_like.verdict is Verdict.FAKE and real_like.verdict is Verdict.REAL
    # Fused, the signals are inside the score: no separate rule-based reading.
    assert fake_like.signals is None and "signals" not in fake_like.to_dict()


def test_score_video_without_a_signal_fit_keeps_the_verdict_and_adds_the_rule_reading() -> None:
    catalogue = (SignalSpec("telling", "forensics", 1, None, "higher: fake"),)
    fusion = FusionSpec("weighted_average", 0.3, 0.7, 1)
    frames = {"m": {0: [0.2, 0.4]}}
    plain = score_video(frames, MEMBERS, fusion)
    report = SignalReport({"telling": 1.0})
    with_signals = score_video(frames, MEMBERS, fusion, signals=report, catalogue=catalogue)
    assert (with_signals.score, with_signals.verdict, with_signals.overrides) == (plain.score, plain.verdict, ())
    assert plain.signals is None
    assert with_signals.signals is not None and with_signals.to_dict()["signals"]["source"] == "rules"


def _labelled(n: int) -> list[LabelledJob]:
    return [LabelledJob(f"job-{i:03d}", int(LABELS[i]), {"m": float(MODELS[i, 0])}, (), _values(i)) for i in range(n)]


CATALOGUE = (
    SignalSpec("telling", "forensics", 1, None, "separates the classes"),
    SignalSpec("noisy", "artefacts", 0, None, "noise"),
)


def test_recalibration_fits_signals_and_reports_importances() -> None:
    setup = Setup(None, FusionSpec("weighted_average", 0.3, 0.7, 1), {"m": 1.0})
    fit = recalibrate(_labelled(N), setup, RecalibrationConfig(fusion_method="stacker"), catalogue=CATALOGUE)
    report = fit.metrics["stacker"]
    assert report["signals_used"] == ["telling", "noisy"]
    importances = report["importances"]
    assert set(importances) == {"m", "telling", "noisy", "noisy" + MISSING_SUFFIX}
    assert max(importances, key=lambda k: abs(importances[k])) == "telling"
    assert report["warnings"] == [] and 0.0 < report["artefact_share"] < 0.5
    assert fit.metrics["held_out"]["after"]["auc"] > 0.8

    # The stored version scores each job exactly as the fit's own scoring did.
    spec = fit.version_spec("v1")
    stored = Setup(spec.state, spec.fusion_spec(setup.fusion), {"m": 1.0})
    jobs = _labelled(N)
    assert score_jobs(jobs, ["m"], stored, catalogue=CATALOGUE) == [
        score_video(
            {"m": {0: [j.scores["m"]]}},
            MEMBERS,
            stored.fusion,
            spec.state,
            signals=SignalReport(j.signals),
            catalogue=CATALOGUE,
        ).score
        for j in jobs
    ]


def test_recalibration_without_any_signal_fits_the_models_alone() -> None:
    jobs = [LabelledJob(j.job_id, j.label, j.scores) for j in _labelled(N)]
    setup = Setup(None, FusionSpec("weighted_average", 0.3, 0.7, 1), {"m": 1.0})
    fit = recalibrate(jobs, setup, RecalibrationConfig(), catalogue=CATALOGUE)
    assert fit.stacker.signals is None
    assert fit.metrics["stacker"]["signals_used"] == [] and fit.metrics["stacker"]["signal_health"] is None
