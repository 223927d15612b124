"""The recalibration knobs, declared once: ``RecalibrationConfig``'s fields.

Seven of them can be set by an operator; each carries a ``Knob`` in its field metadata, from which the settings
(``VERITY_RECAL_*``, read by ``core.settings``), the API's fit body and the command's flags are derived. Stdlib
only, so the settings module can import it without numpy.
"""

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from core.vocabulary import FUSION_METHODS


@dataclass(frozen=True)
class Knob:
    """How an operator sets one field: ``option`` in the API's fit body, ``VERITY_RECAL_<suffix>`` in the
    environment and ``--<suffix>`` on the command line."""

    option: str
    suffix: str
    kind: type[float] | type[int] | type[str]
    help: str

    @property
    def env(self) -> str:
        return f"VERITY_RECAL_{self.suffix}"

    @property
    def flag(self) -> str:
        return "--" + self.suffix.lower().replace("_", "-")


def _knob(default: Any, option: str, suffix: str, kind: type[float] | type[int] | type[str], help: str) -> Any:
    return field(default=default, metadata={"knob": Knob(option, suffix, kind, help)})


@dataclass(frozen=True)
class RecalibrationConfig:
    target_fpr: float = _knob(0.05, "target_fpr", "TARGET_FPR", float, "share of real videos allowed above T_high")
    uncertain_band: float = _knob(
        0.05, "uncertain_band", "UNCERTAIN_BAND", float, "share of the training videos between T_low and T_high"
    )
    held_out_fraction: float = _knob(
        0.3, "held_out_fraction", "HELD_OUT", float, "share of the labelled videos kept out of the fit to evaluate it"
    )
    seed: int = _knob(0, "seed", "SEED", int, "seed of the train / held-out split")
    min_per_class: int = _knob(
        10, "min_per_class", "MIN_PER_CLASS", int, "fewer REAL or FAKE labelled videos than this: no fit (at least 5)"
    )
    min_isotonic_labels: int = _knob(
        50, "min_isotonic_labels", "MIN_ISOTONIC", int, "a model with fewer training labels gets Platt scaling"
    )
    reliable_accuracy: float = 0.8  # smoothed agreement with moderators that makes a model "reliable"
    fusion_method: str | None = _knob(
        None, "method", "METHOD", str, f"fusion method to fit, one of {', '.join(FUSION_METHODS)} (unset: the current)"
    )
    weight_range: tuple[float, float] = (0.3, 2.2)
    real_cap: float = 0.40
    n_bins: int = 10
    # Signals NaN in more of the training videos than this are left out of the stacker (feature health).
    max_signal_nan: float = 0.5
    # Signals the stacker must use: the fit is refused, naming them, when one is broken.
    required_signals: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 0.0 < self.target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in (0, 1), got {self.target_fpr}")
        if not 0.0 <= self.uncertain_band < 1.0:
            raise ValueError(f"uncertain_band must be in [0, 1), got {self.uncertain_band}")
        if not 0.0 < self.held_out_fraction <= 0.5:
            raise ValueError(f"held_out_fraction must be in (0, 0.5], got {self.held_out_fraction}")
        if self.min_per_class < 5:
            # 3-fold stacker calibration needs 3 of each class in training and the held-out part one more.
            raise ValueError(f"min_per_class must be >= 5, got {self.min_per_class}")
        if self.min_isotonic_labels < 1:
            raise ValueError(f"min_isotonic_labels must be >= 1, got {self.min_isotonic_labels}")
        if not 0.5 <= self.reliable_accuracy <= 1.0:
            raise ValueError(f"reliable_accuracy must be in [0.5, 1], got {self.reliable_accuracy}")
        if self.fusion_method is not None and self.fusion_method not in FUSION_METHODS:
            raise ValueError(f"fusion_method must be one of {FUSION_METHODS}, got {self.fusion_method!r}")
        if not 0.0 <= self.real_cap <= 1.0:
            raise ValueError(f"real_cap must be in [0, 1], got {self.real_cap}")
        if self.n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {self.n_bins}")
        if not 0.0 <= self.max_signal_nan < 1.0:
            raise ValueError(f"max_signal_nan must be in [0, 1), got {self.max_signal_nan}")

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["weight_range"] = list(self.weight_range)
        out["required_signals"] = list(self.required_signals)
        return out

    def with_overrides(self, **overrides: Any) -> "RecalibrationConfig":
        """This config with the given fields replaced (None values ignored); ValueError on an invalid value."""
        return replace(self, **{name: value for name, value in overrides.items() if value is not None})


# (field name, knob) for every field an operator may set, in declaration order.
KNOBS: tuple[tuple[str, Knob], ...] = tuple(
    (f.name, f.metadata["knob"]) for f in fields(RecalibrationConfig) if "knob" in f.metadata
)
