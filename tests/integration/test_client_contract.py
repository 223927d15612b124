"""The client's TypedDicts against the server's /openapi.json: the same keys, the same required ones.

The client imports nothing of the server, so its types are declared twice; this test is what keeps the two
declarations one shape. It also checks that a real result's API view validates against ResultView.
"""

from __future__ import annotations

from typing import Any, is_typeddict

import pytest
from flask.testing import FlaskClient

from client import types as client_types

# Each client TypedDict and the schema component that describes the same JSON.
CONTRACT = {
    "JobJson": "JobView",
    "JobLinksJson": "JobLinks",
    "ErrorJson": "ErrorDetail",
    "ResultJson": "ResultView",
    "ThresholdsJson": "Thresholds",
    "ModelScoreJson": "ModelScoreView",
    "TracksJson": "TracksView",
    "TrackJson": "TrackView",
    "TrackDetectionJson": "TrackDetectionView",
    "BoxJson": "BoxView",
    "DetectionPlanJson": "DetectionPlanView",
    "OverrideJson": "OverrideView",
    "VideoJson": "VideoView",
    "FrameCountsJson": "FrameCountsView",
    "PreprocessingJson": "PreprocessingView",
    "SignalsJson": "SignalsView",
    "SignalReadingJson": "SignalReadingView",
    "JobWithResultJson": "JobWithResult",
    "HeatmapJson": "HeatmapView",
    "HeatmapListJson": "HeatmapList",
    "BatchJson": "BatchView",
    "BatchItemJson": "BatchItemView",
    "BatchLinksJson": "BatchLinks",
    "SimulationJson": "SimulationView",
    "SimulationStrategyJson": "StrategyResultView",
    "LatencyJson": "LatencyView",
    "VideoTimelineJson": "VideoTimelineView",
    "OutcomeJson": "OutcomeView",
    "TimelinePointJson": "TimelinePointView",
    "PerFrameFitJson": "PerFrameFitView",
    "PerFrameThresholdsJson": "PerFrameThresholdsView",
    "StreamJson": "StreamView",
    "StreamDecisionStateJson": "StreamDecisionView",
    "StreamFrameCountsJson": "StreamFrameCounts",
    "StreamLinksJson": "StreamLinks",
    "StreamFramesJson": "StreamFramesAccepted",
}


@pytest.fixture(scope="module")
def schemas(client: FlaskClient) -> dict[str, Any]:
    document = client.get("/openapi.json").json
    assert document is not None
    found: dict[str, Any] = document["components"]["schemas"]
    return found


def test_every_typeddict_of_the_client_is_in_the_contract() -> None:
    declared = {name for name, value in vars(client_types).items() if is_typeddict(value) and name[0] != "_"}
    assert declared == set(CONTRACT)


@pytest.mark.parametrize(("typed", "component"), sorted(CONTRACT.items()))
def test_client_types_match_the_server_schema(schemas: dict[str, Any], typed: str, component: str) -> None:
    td = getattr(client_types, typed)
    schema = schemas[component]
    assert set(td.__annotations__) == set(schema["properties"]), f"{typed} keys differ from {component}"
    assert set(td.__required_keys__) == set(schema.get("required", [])), f"{typed} required keys differ"


def test_a_result_view_validates_against_the_documented_model() -> None:
    from api.schemas import ResultView
    from tests.support.results import RESULT

    view = {"job_id": "x", **RESULT.view(), "created_at": "2026-12-01T00:00:00+00:00"}
    checked = ResultView.model_validate(view)
    assert checked.verdict.value == "FAKE" and [t.track_id for t in checked.tracks.tracks] == [0, 1]
    assert checked.model_dump(mode="json", exclude_unset=True) == {**view, "created_at": "2026-12-01T00:00:00Z"}
