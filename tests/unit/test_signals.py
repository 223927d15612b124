"""The forensic signal catalogue and the per-job report stored in results.signals (core/signals.py)."""

from __future__ import annotations

import json
import math
import uuid

import pytest

from core import payloads
from core.results import JobResult, Tracks
from core.scope import ScopeReason
from core.signals import SIGNAL_NAMES, SIGNALS, SPECS, CueOp, SignalReport, SignalSpec
from core.vocabulary import Verdict


def test_the_catalogue_names_are_unique_and_well_formed() -> None:
    assert len(set(SIGNAL_NAMES)) == len(SIGNALS)
    for spec in SIGNALS:
        assert spec.name.split(".")[0] == spec.family, spec.name
        assert spec.fake_direction in {-1, 0, 1}, spec.name
        assert spec.description, spec.name
        assert spec.real_cue is None or spec.real_cue[0] in {">=", "<="}, spec.name


@pytest.mark.parametrize(
    ("cue", "value", "expected"),
    [((">=", 0.5), 0.5, True), ((">=", 0.5), 0.4, False), (("<=", 0.1), 0.05, True), (("<=", 0.1), math.nan, False)],
)
def test_a_real_cue_fires_when_its_value_passes_the_threshold(
    cue: tuple[CueOp, float], value: float, expected: bool
) -> None:
    spec = SignalSpec("x.y", "x", 1, cue, "a test signal")
    assert spec.is_real_cue(value) is expected


def test_a_signal_without_a_cue_never_fires() -> None:
    assert not SignalSpec("x.y", "x", 1, None, "no cue").is_real_cue(1e9)


def test_the_report_round_trips_through_json_with_nan_as_null() -> None:
    values = {name: float(i) for i, name in enumerate(SIGNAL_NAMES)}
    values["forensics.flicker"] = math.nan
    report = SignalReport(values, {"forensics.flicker": "no pair"}, 0.25, "faces_too_small")
    stored = json.loads(json.dumps(report.to_json(), allow_nan=False))  # Postgres JSON has no NaN either
    assert stored["values"]["forensics.flicker"] is None
    back = SignalReport.from_json(stored)
    assert back is not None
    assert math.isnan(back.values["forensics.flicker"])
    assert {k: v for k, v in back.values.items() if k != "forensics.flicker"} == {
        k: v for k, v in values.items() if k != "forensics.flicker"
    }
    assert back.reasons == {"forensics.flicker": "no pair"}
    assert (back.seconds, back.scope) == (0.25, "faces_too_small")


def test_an_empty_column_reads_as_no_report() -> None:
    assert SignalReport.from_json({}) is None
    assert SignalReport.from_json(None) is None


def test_real_cues_lists_the_signals_past_their_threshold_in_catalogue_order() -> None:
    catalogue = (
        SignalSpec("a.low", "a", 1, ("<=", 0.2), "cue when low"),
        SignalSpec("a.high", "a", -1, (">=", 3.0), "cue when high"),
        SignalSpec("a.none", "a", 1, None, "never a cue"),
        SignalSpec("a.missing", "a", 1, (">=", 0.0), "not computed"),
    )
    report = SignalReport({"a.high": 3.0, "a.low": 0.1, "a.none": 0.0, "a.missing": math.nan})
    assert report.real_cues(catalogue) == ("a.low", "a.high")
    assert SignalReport({"a.low": 0.3, "a.high": 2.0}).real_cues(catalogue) == ()


def test_every_catalogue_name_is_its_own_key() -> None:
    assert all(SPECS[name].name == name for name in SIGNAL_NAMES)


def test_a_result_keeps_its_signals_through_the_row_the_view_and_the_webhook() -> None:
    values = dict.fromkeys(SIGNAL_NAMES, 0.5) | {"forensics.flicker": math.nan}
    report = SignalReport(values, {"forensics.flicker": "no pair"}, 0.12, ScopeReason.NON_PHOTOGRAPHIC.value)
    result = JobResult(
        verdict=Verdict.NOT_APPLICABLE,
        score=0.9,
        raw_score=0.9,
        method="weighted_average",
        t_low=0.35,
        t_high=0.65,
        frames_sampled=8,
        faces_found=8,
        tracks=Tracks(8, None, 0),
        signals=report,
    )
    columns = json.loads(json.dumps(result.columns(), allow_nan=False))
    back = JobResult.from_columns(columns)
    assert back.verdict is Verdict.NOT_APPLICABLE and back.signals is not None
    assert back.signals.to_json() == report.to_json()
    assert result.view()["signals"]["scope"] == "non_photographic_faces"
    assert payloads.succeeded(uuid.uuid4(), result)["data"]["scope"] == "non_photographic_faces"
