"""Calibrated per-model P(fake) -> one fused P(fake): weighted average, Noisy-OR or a stacker.

``probs`` always holds the working models only; a model that failed is simply absent.
"""

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from core.scoring.calibration import PlattCalibrator, calibrator_from_dict, expit, fit_platt
from core.scoring.feature_health import check_features, require_healthy
from core.scoring.signal_features import SignalFeatures, fit_signal_features
from core.vocabulary import FUSION_METHODS


class NotEnoughModels(Exception):
    """Fewer models produced a score than fusion needs; the job cannot be scored honestly."""

    def __init__(self, working: int, required: int, detail: str = "") -> None:
        self.working = working
        self.required = required
        message = f"{working} working model(s), at least {required} required"
        super().__init__(f"{message}: {detail}" if detail else message)


def _check_probs(probs: Mapping[str, float]) -> None:
    for name, p in probs.items():
        if not (math.isfinite(p) and 0.0 <= p <= 1.0):
            raise ValueError(f"P(fake) of {name!r} must be in [0, 1], got {p}")


def _require(probs: Mapping[str, float], min_models: int) -> None:
    if len(probs) < max(min_models, 1):
        raise NotEnoughModels(len(probs), max(min_models, 1), f"have {sorted(probs)}")


def weighted_average(probs: Mapping[str, float], weights: Mapping[str, float], min_models: int) -> float:
    """Σ wᵢ pᵢ / Σ wᵢ over the working models (weights renormalise when a model fails)."""
    _require(probs, min_models)
    _check_probs(probs)
    missing = sorted(set(probs) - set(weights))
    if missing:
        raise ValueError(f"no weight for model(s) {missing}")
    w = {name: weights[name] for name in probs}
    if any(not (math.isfinite(v) and v >= 0.0) for v in w.values()):
        raise ValueError(f"weights must be finite and >= 0, got {w}")
    total = math.fsum(w.values())
    if total <= 0.0:
        raise ValueError(f"weights of the working models sum to zero: {w}")
    return math.fsum(w[name] * p for name, p in probs.items()) / total


def noisy_or(probs: Mapping[str, float]) -> float:
    """1 − Π(1 − pᵢ): P(at least one detector is right that it is fake), detectors independent.

    Scores near 1 are expected (four models at 0.9 give 0.9999); the seed's thresholds allow for it.
    """
    if not probs:
        raise ValueError("Noisy-OR of no models")
    _check_probs(probs)
    return 1.0 - math.prod(1.0 - p for p in probs.values())


@dataclass(frozen=True)
class StackerParams:
    """Logistic regression over per-model scores, then optional Platt calibration of its logit.

    ``signals``: when the fit also used forensic signals, their imputation and standardisation, and
    ``signal_coef`` the coefficient of each of its columns (``SignalFeatures.columns()``).
    """

    coef: dict[str, float]
    intercept: float
    calibration: PlattCalibrator | None
    signals: SignalFeatures | None = None
    signal_coef: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        columns = () if self.signals is None else self.signals.columns()
        if set(self.signal_coef) != set(columns):
            raise ValueError(f"signal coefficients {sorted(self.signal_coef)} do not match columns {sorted(columns)}")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "coef": dict(self.coef),
            "intercept": self.intercept,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
        }
        if self.signals is not None:
            out["signals"] = {"features": self.signals.to_dict(), "coef": dict(self.signal_coef)}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "StackerParams":
        raw = data.get("calibration")
        calibration = None if raw is None else calibrator_from_dict(raw)
        if calibration is not None and not isinstance(calibration, PlattCalibrator):
            raise ValueError(f"stacker calibration must be 'platt', got {raw!r}")
        signals = data.get("signals")
        return cls(
            coef={str(k): float(v) for k, v in data["coef"].items()},
            intercept=float(data["intercept"]),
            calibration=calibration,
            signals=None if signals is None else SignalFeatures.from_dict(signals["features"]),
            signal_coef={} if signals is None else {str(k): float(v) for k, v in signals["coef"].items()},
        )


def uses_signals(params: Mapping[str, Any]) -> bool:
    """Whether stacker params (the ``to_dict`` form) were fitted with forensic signals."""
    return params.get("signals") is not None


def stacker(probs: Mapping[str, float], params: StackerParams, signals: Mapping[str, float] | None = None) -> float:
    """P(fake) from the stacker.

    It needs every model it was fitted on: filling a failed model's score in would be a guess, so
    a missing one raises NotEnoughModels. Models it was not fitted on are ignored until a refit.
    Signals are different: a signal not computed (NaN or absent, ``signals`` None included) takes the
    fitted fill value and sets its missing column, exactly as in training.
    """
    _check_probs(probs)
    missing = sorted(set(params.coef) - set(probs))
    if missing:
        raise NotEnoughModels(
            len(probs), len(params.coef), f"the stacker needs every model it was fitted on; missing {missing}"
        )
    z = params.intercept + math.fsum(c * probs[name] for name, c in params.coef.items())
    if params.signals is not None:
        row = params.signals.row(signals or {})
        z += math.fsum(params.signal_coef[col] * float(v) for col, v in zip(params.signals.columns(), row, strict=True))
    if params.calibration is None:
        return expit(z)
    return params.calibration.apply(z)


def fit_stacker(
    X: NDArray[np.floating],
    y: NDArray[np.integer],
    names: list[str],
    cv: int = 3,
    signal_values: NDArray[np.floating] | None = None,
    signal_names: Sequence[str] = (),
    mostly_nan_above: float = 0.5,
) -> StackerParams:
    """Fit the stacker as scikit-learn's ``CalibratedClassifierCV(LogisticRegression(max_iter=1000),
    method="sigmoid", cv=cv, ensemble=False)`` does (the seed used 3-fold sigmoid calibration).

    ``ensemble=False`` because the stored result must be one logistic model plus one sigmoid: the
    regression is fitted on all rows and the sigmoid on its out-of-fold (stratified, unshuffled)
    logits. C is scikit-learn's default 1.0. Columns of X are the models in ``names`` order.

    ``signal_values`` (rows × ``signal_names``, NaN = not computed) adds forensic signals beside the models,
    through ``SignalFeatures`` fitted on these rows. Every signal given is required: BrokenFeatures when one is
    all-NaN, NaN in more than ``mostly_nan_above`` of the rows, or constant (the caller checks feature health
    first and passes the usable ones).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    if X.ndim != 2 or X.shape[1] != len(names) or len(y) != X.shape[0]:
        raise ValueError(f"X must be (n, {len(names)}) with one label per row, got {X.shape} and {len(y)} labels")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate model names: {names}")

    features: SignalFeatures | None = None
    columns = X
    if signal_names:
        raw = np.asarray(signal_values, dtype=np.float64)
        names_list = list(signal_names)
        require_healthy(check_features(raw, names_list, names_list, mostly_nan_above), names_list)
        if raw.shape[0] != X.shape[0]:
            raise ValueError(f"signal matrix has {raw.shape[0]} rows for {X.shape[0]} model rows")
        features = fit_signal_features(raw, names_list)
        columns = np.hstack([X, features.transform(raw)])

    model = LogisticRegression(max_iter=1000).fit(columns, y)
    logits = cross_val_predict(
        LogisticRegression(max_iter=1000), columns, y, cv=StratifiedKFold(n_splits=cv), method="decision_function"
    )
    coef = [float(c) for c in model.coef_[0]]
    return StackerParams(
        coef=dict(zip(names, coef[: len(names)], strict=True)),
        intercept=float(model.intercept_[0]),
        calibration=fit_platt(logits, y),
        signals=features,
        signal_coef={} if features is None else dict(zip(features.columns(), coef[len(names) :], strict=True)),
    )


def stacker_importances(params: StackerParams, X: NDArray[np.floating], names: Sequence[str]) -> dict[str, float]:
    """Each fitted column's coefficient per standard deviation of its training values (``X``: the model
    columns, in ``names`` order), so model scores and signals compare; signal columns are standardised
    already, so theirs is their coefficient."""
    std = np.asarray(X, dtype=np.float64).std(axis=0)
    out = {name: params.coef[name] * float(s) for name, s in zip(names, std, strict=True)}
    out.update(params.signal_coef)
    return out


def fuse(
    method: str,
    probs: Mapping[str, float],
    weights: Mapping[str, float],
    params: Mapping[str, Any],
    min_models: int,
    signals: Mapping[str, float] | None = None,
) -> float:
    """Fuse with ``method`` (one of FUSION_METHODS); NotEnoughModels below ``min_models``.

    ``weights`` matter to the weighted average only; ``params`` is the stacker's ``to_dict`` form;
    ``signals`` (forensic signal values) to a stacker fitted with them only.
    """
    _require(probs, min_models)
    if method == "weighted_average":
        return weighted_average(probs, weights, min_models)
    if method == "noisy_or":
        return noisy_or(probs)
    if method == "stacker":
        return stacker(probs, StackerParams.from_dict(params), signals)
    raise ValueError(f"unknown fusion method {method!r}; expected one of {FUSION_METHODS}")
