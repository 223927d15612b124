"""Per-frame P(fake) of one model on one face track -> one score.

Specs: ``mean``, ``max``, ``topk:K`` (mean of the K highest; the seed's topk4 is ``topk:4``),
``softmax:B`` (softmax-weighted mean with temperature B; the seed's softmax_b5 is ``softmax:5``) and
``confident`` (the DFDC winner's rule).
"""

import math
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
from numpy.typing import NDArray

Scores = NDArray[np.float64]
Aggregator = Callable[[Sequence[float] | NDArray[np.floating]], float]

SPEC_FORMS = "'mean', 'max', 'topk:K' (integer K >= 1), 'softmax:B' (finite B >= 0) or 'confident'"


def _mean(s: Scores) -> float:
    return float(np.mean(s))


def _max(s: Scores) -> float:
    return float(np.max(s))


def _topk(k: int, s: Scores) -> float:
    # Fewer frames than k: the mean of all of them is the only honest answer.
    if len(s) <= k:
        return float(np.mean(s))
    return float(np.mean(np.partition(s, len(s) - k)[-k:]))


def _softmax(beta: float, s: Scores) -> float:
    z = beta * s
    # Subtracting the max keeps exp() from overflowing; it cancels in the ratio.
    w = np.exp(z - np.max(z))
    return float(np.sum(w * s) / np.sum(w))


def _confident(s: Scores) -> float:
    # DFDC winner (selimsef/dfdc_deepfake_challenge, confident_strategy). It writes `n // 2.5`;
    # for an integer count `c > n // 2.5` and `c > n / 2.5` are the same test.
    n = len(s)
    fakes = s[s > 0.8]
    if len(fakes) > n / 2.5 and len(fakes) > 11:
        return float(np.mean(fakes))
    reals = s[s < 0.2]
    if len(reals) > 0.9 * n:
        return float(np.mean(reals))
    return float(np.mean(s))


def _checked(scores: Sequence[float] | NDArray[np.floating]) -> Scores:
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"frame scores must be one-dimensional, got shape {s.shape}")
    if s.size == 0:
        raise ValueError("cannot aggregate an empty list of frame scores")
    # Out-of-range values mean a model returned logits or P(real) by mistake: fail loudly.
    if not np.all(np.isfinite(s)) or np.any(s < 0.0) or np.any(s > 1.0):
        raise ValueError("frame scores must be probabilities in [0, 1]")
    return s


def _apply(fn: Callable[[Scores], float], scores: Sequence[float] | NDArray[np.floating]) -> float:
    return fn(_checked(scores))


def _parse_int(text: str, spec: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"bad aggregator spec {spec!r}: K must be an integer; use {SPEC_FORMS}") from None
    if value < 1:
        raise ValueError(f"bad aggregator spec {spec!r}: K must be >= 1; use {SPEC_FORMS}")
    return value


def _parse_beta(text: str, spec: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"bad aggregator spec {spec!r}: B must be a number; use {SPEC_FORMS}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"bad aggregator spec {spec!r}: B must be finite and >= 0; use {SPEC_FORMS}")
    return value


def parse_aggregator(spec: str) -> Aggregator:
    """The aggregation function for ``spec``; ValueError naming the valid forms if it is not one."""
    name, sep, arg = spec.partition(":")
    fn: Callable[[Scores], float]
    if not sep and name == "mean":
        fn = _mean
    elif not sep and name == "max":
        fn = _max
    elif not sep and name == "confident":
        fn = _confident
    elif sep and name == "topk":
        fn = partial(_topk, _parse_int(arg, spec))
    elif sep and name == "softmax":
        fn = partial(_softmax, _parse_beta(arg, spec))
    else:
        raise ValueError(f"unknown aggregator spec {spec!r}; use {SPEC_FORMS}")
    return partial(_apply, fn)


def aggregate(scores: Sequence[float] | NDArray[np.floating], spec: str) -> float:
    """Aggregate one track's per-frame P(fake) with ``spec``; ValueError on empty input or a bad spec."""
    return parse_aggregator(spec)(scores)
