"""The calibration service functions (fit, activate, list, get) over an in-memory store: no database, no torch.

The same functions run over Postgres through ``db.calibrations.sql_store`` in tests/integration/test_calibrations.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import pytest

from core.pack_defaults import PackDefaults
from core.scoring.recalibration_config import RecalibrationConfig
from core.scoring.recalibration_types import LabelledJob, NotEnoughLabels
from core.scoring.verdict import FusionSpec
from db import calibrations
from db.calibrations import ACTIVE, CANDIDATE, RETIRED, CalibrationNotFound, CalibrationStore, Stores
from db.models import Calibration, utcnow

PACK = PackDefaults(FusionSpec("weighted_average", 0.35, 0.65, 1), {"sharp": 1.0, "squashed": 1.0})
CONFIG = RecalibrationConfig(seed=1)


def _jobs(n: int, seed: int = 0) -> list[LabelledJob]:
    """``sharp`` separates the classes around 0.5; ``squashed`` does too, but crowded towards 0 (miscalibrated)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = i % 2
        sharp = float(np.clip(rng.normal(0.3 + 0.4 * label, 0.15), 0, 1))
        squashed = float(np.clip(rng.normal(0.3 + 0.4 * label, 0.15), 0, 1)) ** 4
        out.append(LabelledJob(f"job-{i:04d}", label, {"sharp": sharp, "squashed": squashed}))
    return out


class FakeStore:
    """The store's contract in memory; one instance plays every transaction."""

    def __init__(self, jobs: list[LabelledJob]) -> None:
        self.jobs = jobs
        self.rows: list[Calibration] = []
        self.locks = 0
        self.clock = utcnow()

    def labelled_jobs(self) -> tuple[list[LabelledJob], dict[str, Any]]:
        digest = ",".join(f"{j.job_id}:{j.label}" for j in self.jobs)
        return list(self.jobs), {"labelled_jobs": len(self.jobs), "labels_digest": digest}

    def get(self, version: str) -> Calibration | None:
        return next((r for r in self.rows if r.version == version), None)

    def active(self) -> Calibration | None:
        live = [r for r in self.rows if r.status == ACTIVE]
        return max(live, key=lambda r: r.activated_at or self.clock, default=None)

    def with_status(self, status: str) -> list[Calibration]:
        return [r for r in self.rows if r.status == status]

    def newest_first(self) -> list[Calibration]:
        return sorted(self.rows, key=lambda r: r.id, reverse=True)

    def count(self) -> int:
        return len(self.rows)

    def add(self, row: Calibration) -> None:
        # What the database fills in on insert.
        self.clock += timedelta(seconds=1)
        row.id, row.created_at = len(self.rows) + 1, self.clock
        self.rows.append(row)

    def lock_activations(self) -> None:
        self.locks += 1


def _stores(store: FakeStore) -> Stores:
    @contextmanager
    def open_store() -> Iterator[CalibrationStore]:
        yield store

    return open_store


@pytest.fixture
def store() -> FakeStore:
    return FakeStore(_jobs(80))


def test_fit_stores_a_candidate_and_returns_its_view(store: FakeStore) -> None:
    view = calibrations.fit(_stores(store), PACK, CONFIG)
    assert view["version"] == "v1" and view["status"] == CANDIDATE and view["activated_at"] is None
    assert view["fitted_on"]["models"] == ["sharp", "squashed"] and view["fitted_on"]["before_version"] is None
    assert view["fitted_on"]["labels_digest"] == store.labelled_jobs()[1]["labels_digest"]
    assert set(view["calibrators"]) == {"sharp", "squashed"} and "x" not in view["calibrators"]["sharp"]
    assert "reliability" not in view["metrics"] and "stacker" not in view["fusion"]
    full = calibrations.get_version(_stores(store), "v1", full=True)
    assert full["metrics"]["reliability"]["after"] and "stacker" in full["fusion"]
    assert [row.status for row in store.rows] == [CANDIDATE]


def test_a_scheduled_fit_skips_unchanged_labels(store: FakeStore) -> None:
    first = calibrations.fit(_stores(store), PACK, CONFIG, skip_if_unchanged=True)
    again = calibrations.fit(_stores(store), PACK, CONFIG, skip_if_unchanged=True)
    assert again == {"skipped": f"no new labels since {first['version']}", "version": first["version"]}
    store.jobs = _jobs(82)
    assert calibrations.fit(_stores(store), PACK, CONFIG, skip_if_unchanged=True)["version"] == "v2"


def test_auto_activation_follows_the_held_out_metrics(store: FakeStore) -> None:
    view = calibrations.fit(_stores(store), PACK, CONFIG, auto_activate=True)
    expected = ACTIVE if view["metrics"]["better"] else CANDIDATE
    assert view["status"] == expected and store.rows[0].status == expected


def test_activate_retires_the_previous_version_and_rollback_reactivates(store: FakeStore) -> None:
    stores = _stores(store)
    first = calibrations.fit(stores, PACK, CONFIG)["version"]
    assert calibrations.activate(stores, first, by="test")["status"] == ACTIVE
    second = calibrations.fit(stores, PACK, RecalibrationConfig(seed=2))
    assert second["fitted_on"]["before_version"] == first  # fitted against the active version
    calibrations.activate(stores, second["version"])
    assert {r.version: r.status for r in store.rows} == {first: RETIRED, second["version"]: ACTIVE}
    calibrations.activate(stores, first, by="rollback")
    assert {r.version: r.status for r in store.rows} == {first: ACTIVE, second["version"]: RETIRED}
    trail = calibrations.get_version(stores, first)["metrics"]["activations"]
    assert [(t["previous"], t["by"]) for t in trail] == [([], "test"), ([second["version"]], "rollback")]
    assert store.locks == 3
    listed = calibrations.list_versions(stores)
    assert [v["version"] for v in listed] == [second["version"], first]


def test_activating_the_active_version_again_changes_nothing(store: FakeStore) -> None:
    stores = _stores(store)
    version = calibrations.fit(stores, PACK, CONFIG)["version"]
    calibrations.activate(stores, version)
    calibrations.activate(stores, version)
    assert len(store.rows[0].metrics["activations"]) == 1


def test_unknown_versions_and_too_few_labels_are_errors(store: FakeStore) -> None:
    stores = _stores(store)
    with pytest.raises(CalibrationNotFound, match="'v9'"):
        calibrations.activate(stores, "v9")
    with pytest.raises(CalibrationNotFound):
        calibrations.get_version(stores, "v9")
    with pytest.raises(NotEnoughLabels, match="at least 100 REAL and 100 FAKE"):
        calibrations.fit(stores, PACK, RecalibrationConfig(min_per_class=100))
    assert store.rows == [] and calibrations.list_versions(stores) == []


def test_the_current_setup_is_the_active_version_over_the_pack(store: FakeStore) -> None:
    assert calibrations.current_setup(store, PACK).state is None
    version = calibrations.fit(_stores(store), PACK, CONFIG)["version"]
    calibrations.activate(_stores(store), version)
    setup = calibrations.current_setup(store, PACK)
    assert setup.state is not None and setup.state.version == version
    assert setup.base_weights == PACK.weights and setup.fusion.min_models == PACK.fusion.min_models
