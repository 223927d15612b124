import math

import numpy as np
import pytest

from core.scoring.feature_health import (
    ALL_NAN,
    MISSING,
    MOSTLY_NAN,
    ZERO_VARIANCE,
    BrokenFeatures,
    artefact_share,
    artefact_warning,
    check_features,
    require_healthy,
)
from core.scoring.fusion import fit_stacker
from core.scoring.recalibration import recalibrate
from core.scoring.recalibration_config import RecalibrationConfig
from core.scoring.recalibration_types import LabelledJob, Setup
from core.scoring.verdict import FusionSpec
from core.signals import SignalSpec

NAN = math.nan
ROWS = 12
RNG = np.random.default_rng(7)
GOOD = RNG.normal(size=ROWS)
BROKEN = {
    ALL_NAN: np.full(ROWS, NAN),
    MOSTLY_NAN: np.where(np.arange(ROWS) < 8, NAN, GOOD),  # 8 of 12 NaN: over half
    ZERO_VARIANCE: np.where(np.arange(ROWS) % 3 == 0, NAN, 4.0),  # one value wherever computed
}
LABELS = np.array([0, 1] * (ROWS // 2))


def _matrix(*columns: np.ndarray) -> np.ndarray:
    return np.column_stack(columns)


@pytest.mark.parametrize("problem", sorted(BROKEN))
def test_each_broken_kind_is_named(problem: str) -> None:
    health = check_features(_matrix(GOOD, BROKEN[problem]), ["good", "bad"], ["good", "bad"])
    assert health.broken == {"bad": problem} and health.usable == ("good",)
    assert health.named(problem) == ("bad",)
    assert health.to_dict()[problem] == ["bad"] and health.to_dict()["usable"] == ["good"]


def test_a_missing_column_is_named() -> None:
    health = check_features(_matrix(GOOD), ["good"], ["good", "absent"])
    assert health.broken == {"absent": MISSING}
    absent = health.columns[1]
    assert (absent.nan_fraction, absent.std) == (1.0, None)


def test_a_few_nans_are_healthy() -> None:
    some = np.where(np.arange(ROWS) < 6, NAN, GOOD)  # exactly half: not "mostly"
    health = check_features(_matrix(some), ["half"], ["half"])
    assert health.broken == {} and health.columns[0].nan_fraction == 0.5


@pytest.mark.parametrize("problem", sorted(BROKEN))
def test_required_broken_columns_refuse_with_their_names(problem: str) -> None:
    health = check_features(_matrix(GOOD, BROKEN[problem]), ["good", "bad"], ["good", "bad"])
    require_healthy(health, ["good"])  # an optional broken column is only reported
    with pytest.raises(BrokenFeatures, match=f"bad \\({problem}\\)") as info:
        require_healthy(health, ["good", "bad"])
    assert info.value.broken == {"bad": problem}


def test_a_required_column_never_checked_is_missing() -> None:
    health = check_features(_matrix(GOOD), ["good"], ["good"])
    with pytest.raises(BrokenFeatures, match="elsewhere \\(missing\\)"):
        require_healthy(health, ["elsewhere"])


@pytest.mark.parametrize("problem", sorted(BROKEN))
def test_the_stacker_refuses_to_fit_on_a_broken_signal(problem: str) -> None:
    models = RNG.uniform(size=(ROWS, 1))
    with pytest.raises(BrokenFeatures, match=problem):
        fit_stacker(models, LABELS, ["m"], signal_values=_matrix(GOOD, BROKEN[problem]), signal_names=["ok", "bad"])


def test_artefact_warning_when_the_artefact_family_dominates() -> None:
    families = {"m": "face_models", "art.a": "artefacts", "art.b": "artefacts", "temp": "temporal"}
    dominated = {"m": 0.5, "art.a": -1.0, "art.b": 0.8, "temp": 0.2}
    assert artefact_share(dominated, families) == pytest.approx(1.8 / 2.5)
    warning = artefact_warning(dominated, families)
    assert warning is not None and "72%" in warning
    assert artefact_warning({"m": 2.0, "art.a": 1.0, "temp": 0.5}, families) is None
    assert artefact_share({"m": 0.0}, families) == 0.0


def _jobs(signal_values: list[dict[str, float]]) -> list[LabelledJob]:
    rng = np.random.default_rng(3)
    jobs = []
    for i, signals in enumerate(signal_values):
        label = i % 2
        score = float(np.clip(0.5 + (0.2 if label else -0.2) + rng.normal(scale=0.2), 0.0, 1.0))
        jobs.append(LabelledJob(f"job-{i:03d}", label, {"m": score}, (), signals))
    return jobs


CATALOGUE = (
    SignalSpec("ok", "forensics", 1, None, "a healthy signal"),
    SignalSpec("flat", "quality", 0, None, "one value everywhere"),
    SignalSpec("rare", "temporal", 1, None, "mostly not computed"),
)
SETUP = Setup(None, FusionSpec("weighted_average", 0.3, 0.7, 1), {"m": 1.0})


def _signal_rows(n: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(5)
    return [{"ok": float(rng.normal() + i % 2), "flat": 1.0, "rare": 0.3 if i % 5 == 0 else NAN} for i in range(n)]


def test_recalibration_drops_and_reports_broken_optional_signals() -> None:
    fit = recalibrate(_jobs(_signal_rows(60)), SETUP, RecalibrationConfig(), catalogue=CATALOGUE)
    report = fit.metrics["stacker"]
    assert report["signals_used"] == ["ok"]
    health = report["signal_health"]
    assert (health["zero_variance"], health["mostly_nan"]) == (["flat"], ["rare"])
    assert fit.stacker.signals is not None and fit.stacker.signals.names == ("ok",)


def test_recalibration_refuses_when_a_required_signal_is_broken() -> None:
    config = RecalibrationConfig(required_signals=("ok", "rare"))
    with pytest.raises(BrokenFeatures, match="rare \\(mostly_nan\\)"):
        recalibrate(_jobs(_signal_rows(60)), SETUP, config, catalogue=CATALOGUE)
