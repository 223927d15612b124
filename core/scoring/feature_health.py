"""Feature-health checks on the signal columns of a training matrix, before a fit trusts them.

A column is broken when it is missing from the data, holds no finite value, is mostly NaN (more than
``mostly_nan_above`` of the rows), or has one value only (zero variance): a logistic regression fitted on it
learns nothing true, or learns the NaN fill. A fit refuses broken columns it requires (:func:`require_healthy`)
and drops and reports the others. After the fit, :func:`artefact_warning` says when the artefact family carries
most of the weight: artefact statistics follow compression more than manipulation, so real re-encoded videos
pay for it in false positives (the seed's lesson).
"""

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

MISSING = "missing"
ALL_NAN = "all_nan"
MOSTLY_NAN = "mostly_nan"
ZERO_VARIANCE = "zero_variance"

ARTEFACT_FAMILY = "artefacts"


@dataclass(frozen=True)
class ColumnHealth:
    """One column over the training rows: its NaN share (1.0 when missing), the std of its finite values (None
    with fewer than two) and what is wrong with it (None: healthy)."""

    name: str
    nan_fraction: float
    std: float | None
    problem: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "nan_fraction": self.nan_fraction, "std": self.std, "problem": self.problem}


@dataclass(frozen=True)
class FeatureHealth:
    """Every expected column's health over ``rows`` training rows."""

    rows: int
    mostly_nan_above: float
    columns: tuple[ColumnHealth, ...]

    def named(self, problem: str) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.problem == problem)

    @property
    def broken(self) -> dict[str, str]:
        return {c.name: c.problem for c in self.columns if c.problem is not None}

    @property
    def usable(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.problem is None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "mostly_nan_above": self.mostly_nan_above,
            "usable": list(self.usable),
            **{kind: list(self.named(kind)) for kind in (MISSING, ALL_NAN, MOSTLY_NAN, ZERO_VARIANCE)},
            "columns": [c.to_dict() for c in self.columns],
        }


class BrokenFeatures(ValueError):
    """A fit was asked to use columns it cannot fit honestly; the message names each and what is wrong."""

    def __init__(self, broken: Mapping[str, str]) -> None:
        self.broken = dict(broken)
        listed = ", ".join(f"{name} ({problem})" for name, problem in sorted(self.broken.items()))
        super().__init__(f"refusing to fit on broken feature columns: {listed}")


def _column(name: str, values: NDArray[np.float64] | None, rows: int, mostly_nan_above: float) -> ColumnHealth:
    if values is None:
        return ColumnHealth(name, 1.0, None, MISSING)
    finite = values[np.isfinite(values)]
    nan_fraction = 1.0 - finite.size / rows if rows else 1.0
    std = float(np.std(finite)) if finite.size >= 2 else None
    if finite.size == 0:
        problem: str | None = ALL_NAN
    elif nan_fraction > mostly_nan_above:
        problem = MOSTLY_NAN
    elif std is None or std == 0.0:
        problem = ZERO_VARIANCE
    else:
        problem = None
    return ColumnHealth(name, nan_fraction, std, problem)


def check_features(
    X: NDArray[np.floating],
    names: Sequence[str],
    expected: Sequence[str],
    mostly_nan_above: float = 0.5,
) -> FeatureHealth:
    """The health of each ``expected`` column of ``X`` (rows × ``names``, NaN = not computed)."""
    if not 0.0 <= mostly_nan_above < 1.0:
        raise ValueError(f"mostly_nan_above must be in [0, 1), got {mostly_nan_above}")
    matrix = np.asarray(X, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[1] != len(names):
        raise ValueError(f"X must be (n, {len(names)}), got {matrix.shape}")
    index = {name: i for i, name in enumerate(names)}
    rows = matrix.shape[0]
    columns = tuple(
        _column(name, matrix[:, index[name]] if name in index else None, rows, mostly_nan_above) for name in expected
    )
    return FeatureHealth(rows, mostly_nan_above, columns)


def require_healthy(health: FeatureHealth, required: Collection[str]) -> None:
    """BrokenFeatures naming every required column that is broken (a required column not checked is missing)."""
    checked = {c.name for c in health.columns}
    broken = {name: problem for name, problem in health.broken.items() if name in required}
    broken.update({name: MISSING for name in required if name not in checked})
    if broken:
        raise BrokenFeatures(broken)


def artefact_share(importances: Mapping[str, float], families: Mapping[str, str]) -> float:
    """Share of the total |importance| carried by columns of the artefact family (0.0 when all are zero)."""
    total = math.fsum(abs(v) for v in importances.values())
    if total == 0.0:
        return 0.0
    return math.fsum(abs(v) for name, v in importances.items() if families.get(name) == ARTEFACT_FAMILY) / total


def artefact_warning(importances: Mapping[str, float], families: Mapping[str, str], limit: float = 0.5) -> str | None:
    """A warning when the artefact family carries more than ``limit`` of the fitted importances."""
    share = artefact_share(importances, families)
    if share <= limit:
        return None
    return (
        f"artefact features carry {share:.0%} of the fitted importance (over {limit:.0%}): they follow compression "
        "more than manipulation, so expect false positives on re-encoded real videos; add labelled real videos "
        "with varied compression"
    )
