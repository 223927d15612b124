"""The active calibration version as the worker uses it, re-read from the database at most every few seconds.

Activation happens in another process (the API or the command), so a worker sees a new version within
``ACTIVE_CACHE_S``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.scoring.recalibration_types import VersionSpec
from core.scoring.verdict import CalibrationState, FusionSpec
from core.streams.thresholds import stored_per_frame_thresholds
from db.calibrations import sql_store, version_spec

ACTIVE_CACHE_S = 5.0  # the worker re-reads the active version at most this often


@dataclass(frozen=True)
class ActiveCalibration:
    """The active version as the worker uses it: ``state`` for ``run_pipeline(calibration=...)`` and
    ``fusion_spec(pack_fusion)`` for the method, thresholds and stacker this version fitted."""

    version: str
    spec: VersionSpec
    # Option B's fitted (t_low, t_high) by averaging ("mean", "ema"), for live streams (core/streams/thresholds.py).
    per_frame: Mapping[str, tuple[float, float]] = field(default_factory=dict)

    @property
    def state(self) -> CalibrationState:
        return self.spec.state

    def fusion_spec(self, default: FusionSpec) -> FusionSpec:
        return self.spec.fusion_spec(default)


_cache_lock = threading.Lock()
_cache: tuple[float, ActiveCalibration | None] | None = None


def clear_cache() -> None:
    global _cache
    with _cache_lock:
        _cache = None


def active(max_age_s: float = ACTIVE_CACHE_S) -> ActiveCalibration | None:
    """The active version (None: identity calibration and the pack's fusion), cached for ``max_age_s``."""
    global _cache
    now = time.monotonic()
    with _cache_lock:
        if _cache is not None and now - _cache[0] < max_age_s:
            return _cache[1]
    with sql_store() as store:
        row = store.active()
        value = (
            None
            if row is None
            else ActiveCalibration(row.version, version_spec(row), stored_per_frame_thresholds(row.thresholds))
        )
    with _cache_lock:
        _cache = (now, value)
    return value


def active_calibration() -> CalibrationState | None:
    """The active version's CalibrationState, or None when no version is active."""
    current = active()
    return None if current is None else current.state
