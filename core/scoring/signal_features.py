"""Forensic signal values -> the standardised columns the stacker multiplies by its coefficients.

Fitted once on the training rows and stored inside the stacker's params, so inference repeats training's
arithmetic exactly: a NaN (signal not computed) takes the training median; a signal that was NaN in some
training rows also gets a 0/1 "was missing" column (``<name>:missing``), so the fit can learn what a missing
value says; then every column is standardised with the training mean and std. Coefficients on standardised
columns are directly comparable, which is what the feature importances report.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

MISSING_SUFFIX = ":missing"


@dataclass(frozen=True)
class SignalFeatures:
    """``names``: the signals used, with their NaN ``fill``; ``indicators``: those that also get a missing column;
    ``mean`` / ``scale``: per derived column (``columns()`` order)."""

    names: tuple[str, ...]
    fill: tuple[float, ...]
    indicators: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.fill) != len(self.names):
            raise ValueError(f"one fill value per signal: {len(self.fill)} for {len(self.names)}")
        unknown = sorted(set(self.indicators) - set(self.names))
        if unknown:
            raise ValueError(f"missing indicators for signals not used: {unknown}")
        n = len(self.columns())
        if len(self.mean) != n or len(self.scale) != n:
            raise ValueError(f"one mean and scale per column: {len(self.mean)}, {len(self.scale)} for {n}")
        if any(not (math.isfinite(s) and s > 0.0) for s in self.scale):
            raise ValueError(f"scales must be finite and > 0, got {self.scale}")

    def columns(self) -> tuple[str, ...]:
        return (*self.names, *(name + MISSING_SUFFIX for name in self.indicators))

    def source(self, column: str) -> str:
        """The signal a derived column comes from."""
        return column.removesuffix(MISSING_SUFFIX)

    def transform(self, X: NDArray[np.floating]) -> NDArray[np.float64]:
        """Rows × ``names`` (NaN = not computed) -> rows × ``columns()``, imputed and standardised."""
        raw = np.asarray(X, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != len(self.names):
            raise ValueError(f"signal matrix must be (n, {len(self.names)}), got {raw.shape}")
        missing = ~np.isfinite(raw)
        filled = np.where(missing, np.asarray(self.fill, dtype=np.float64), raw)
        flags = missing[:, [self.names.index(name) for name in self.indicators]].astype(np.float64)
        derived = np.hstack([filled, flags])
        return (derived - np.asarray(self.mean, dtype=np.float64)) / np.asarray(self.scale, dtype=np.float64)

    def row(self, values: Mapping[str, float]) -> NDArray[np.float64]:
        """One video's signals (absent = NaN) as its standardised columns."""
        raw = np.array([[values.get(name, math.nan) for name in self.names]], dtype=np.float64)
        out: NDArray[np.float64] = self.transform(raw)[0]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "fill": list(self.fill),
            "indicators": list(self.indicators),
            "mean": list(self.mean),
            "scale": list(self.scale),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SignalFeatures":
        return cls(
            names=tuple(str(n) for n in data["names"]),
            fill=tuple(float(v) for v in data["fill"]),
            indicators=tuple(str(n) for n in data["indicators"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
        )


def fit_signal_features(X: NDArray[np.floating], names: Sequence[str], indicators: bool = True) -> SignalFeatures:
    """Fit the fill values (training medians), the missing indicators and the standardisation on ``X``.

    Every column needs a finite value (feature health refuses all-NaN ones before this). A derived column
    constant over the training rows gets scale 1.0, so it standardises to 0 and its coefficient stays 0.
    """
    raw = np.asarray(X, dtype=np.float64)
    if raw.ndim != 2 or raw.shape[1] != len(names):
        raise ValueError(f"signal matrix must be (n, {len(names)}), got {raw.shape}")
    missing = ~np.isfinite(raw)
    empty = [name for name, col in zip(names, missing.T, strict=True) if col.all()]
    if empty:
        raise ValueError(f"signals without any finite value cannot be filled: {empty}")
    fill = tuple(float(np.median(col[np.isfinite(col)])) for col in raw.T)
    flagged = tuple(name for name, col in zip(names, missing.T, strict=True) if indicators and col.any())
    unscaled = SignalFeatures(
        tuple(names), fill, flagged, (0.0,) * (len(names) + len(flagged)), (1.0,) * (len(names) + len(flagged))
    )
    derived = unscaled.transform(raw)
    std = derived.std(axis=0)
    return SignalFeatures(
        tuple(names),
        fill,
        flagged,
        tuple(float(m) for m in derived.mean(axis=0)),
        tuple(float(s) if s > 0.0 else 1.0 for s in std),
    )
