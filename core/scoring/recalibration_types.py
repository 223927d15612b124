"""The values recalibration passes around: a labelled job, a scoring setup, a stored version and a fit's result.

Pure: no database, no torch. ``VersionSpec.from_row`` / ``Recalibration.row_columns`` are the two directions of a
``calibrations`` row's JSON columns.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.scoring.calibration import Calibrator, calibrator_from_dict
from core.scoring.fusion import StackerParams
from core.scoring.verdict import CalibrationState, FusionSpec


class NotEnoughLabels(ValueError):
    """Too few labelled videos to fit honestly; the message says how many are needed and how many there are."""

    def __init__(self, needed_per_class: int, have_real: int, have_fake: int, detail: str = "") -> None:
        self.needed_per_class = needed_per_class
        self.have_real = have_real
        self.have_fake = have_fake
        message = (
            f"recalibration needs at least {needed_per_class} REAL and {needed_per_class} FAKE labelled jobs "
            f"with stored per-model scores{detail}; have {have_real} REAL and {have_fake} FAKE"
        )
        super().__init__(message)

    def to_dict(self) -> dict[str, int]:
        return {
            "needed_per_class": self.needed_per_class,
            "have_real": self.have_real,
            "have_fake": self.have_fake,
        }


@dataclass(frozen=True)
class LabelledJob:
    """One labelled video. ``scores``: per-model aggregated P(fake) of the worst track (what the result
    stores per model); ``tracks``: every track's per-model aggregated scores, when known; ``signals``: its
    forensic signal values (NaN or absent: not computed)."""

    job_id: str
    label: int  # 1 = FAKE, 0 = REAL
    scores: Mapping[str, float]
    tracks: Sequence[Mapping[str, float]] = ()
    signals: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.label not in (0, 1):
            raise ValueError(f"label of {self.job_id} must be 0 (REAL) or 1 (FAKE), got {self.label!r}")


@dataclass(frozen=True)
class Setup:
    """How videos are scored: a calibration state (None = identity), a fusion spec, base member weights."""

    state: CalibrationState | None
    fusion: FusionSpec
    base_weights: Mapping[str, float] = field(default_factory=dict)  # missing = 1.0


@dataclass(frozen=True)
class VersionSpec:
    """What one stored calibration version says: its state plus its fusion method, thresholds and params.

    ``min_models`` None keeps the pack's. ``stacker`` is fitted whatever the method, so a replay can try it;
    ``by_method`` holds thresholds fitted for each fusion method.
    """

    state: CalibrationState
    method: str
    t_low: float
    t_high: float
    params: Mapping[str, Any] = field(default_factory=dict)
    min_models: int | None = None
    stacker: Mapping[str, Any] | None = None
    by_method: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def fusion_spec(self, default: FusionSpec, method: str | None = None) -> FusionSpec:
        """The fusion this version scores with; ``default`` (the pack's) supplies ``min_models``.

        ``method`` picks another fusion method with the thresholds this version fitted for it.
        """
        min_models = default.min_models if self.min_models is None else self.min_models
        if method is None or method == self.method:
            return FusionSpec(self.method, self.t_low, self.t_high, min_models, dict(self.params))
        if method not in self.by_method:
            raise ValueError(f"version {self.state.version} has no thresholds for fusion method {method!r}")
        params: Mapping[str, Any] = {}
        if method == "stacker":
            if self.stacker is None:
                raise ValueError(f"version {self.state.version} has no fitted stacker")
            params = self.stacker
        t = self.by_method[method]
        return FusionSpec(method, float(t["t_low"]), float(t["t_high"]), min_models, dict(params))

    @classmethod
    def from_row(
        cls,
        version: str,
        calibrators: Mapping[str, Any],
        feedback_weights: Mapping[str, Any],
        fusion: Mapping[str, Any],
        thresholds: Mapping[str, Any],
    ) -> "VersionSpec":
        """From the JSON columns of a ``calibrations`` row (the inverse of ``Recalibration.row_columns``)."""
        state = CalibrationState(
            version=version,
            calibrators={name: calibrator_from_dict(c) for name, c in calibrators.items()},
            feedback_weights={name: float(w) for name, w in feedback_weights.items()},
            reliable_models=frozenset(fusion.get("reliable_models", ())),
            real_cap=float(fusion.get("real_cap", 0.40)),
        )
        min_models = fusion.get("min_models")
        return cls(
            state=state,
            method=str(fusion["method"]),
            t_low=float(thresholds["t_low"]),
            t_high=float(thresholds["t_high"]),
            params=dict(fusion.get("params") or {}),
            min_models=None if min_models is None else int(min_models),
            stacker=fusion.get("stacker"),
            by_method={m: dict(t) for m, t in (thresholds.get("by_method") or {}).items()},
        )


@dataclass(frozen=True)
class Recalibration:
    """Everything a ``calibrations`` row needs (see ``row_columns``)."""

    calibrators: dict[str, Calibrator]
    feedback_weights: dict[str, float]
    reliable_models: frozenset[str]
    real_cap: float
    method: str
    t_low: float
    t_high: float
    stacker: StackerParams
    by_method: dict[str, dict[str, float]]
    fitted_on: dict[str, Any]
    metrics: dict[str, Any]
    target_fpr: float
    uncertain_band: float

    @property
    def better(self) -> bool:
        return bool(self.metrics["better"])

    def state(self, version: str) -> CalibrationState:
        return CalibrationState(
            version, dict(self.calibrators), dict(self.feedback_weights), self.reliable_models, self.real_cap
        )

    def row_columns(self) -> dict[str, dict[str, Any]]:
        """The JSON columns of a ``calibrations`` row: calibrators, feedback_weights, fusion, thresholds,
        fitted_on, metrics."""
        return {
            "calibrators": {name: c.to_dict() for name, c in self.calibrators.items()},
            "feedback_weights": dict(self.feedback_weights),
            "fusion": {
                "method": self.method,
                "params": self.stacker.to_dict() if self.method == "stacker" else {},
                "stacker": self.stacker.to_dict(),
                "min_models": None,
                "reliable_models": sorted(self.reliable_models),
                "real_cap": self.real_cap,
            },
            "thresholds": {
                "t_low": self.t_low,
                "t_high": self.t_high,
                "target_fpr": self.target_fpr,
                "uncertain_band": self.uncertain_band,
                "by_method": self.by_method,
            },
            "fitted_on": self.fitted_on,
            "metrics": self.metrics,
        }

    def version_spec(self, version: str) -> VersionSpec:
        cols = self.row_columns()
        return VersionSpec.from_row(
            version, cols["calibrators"], cols["feedback_weights"], cols["fusion"], cols["thresholds"]
        )
