import json
import math

import pytest

from core.results import read_overrides
from core.scoring.override import FORENSIC_REAL_CAP, MIN_REAL_CUES, Override, forensic_real_cap
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.signals import SignalReport, SignalSpec
from core.vocabulary import Verdict

CATALOGUE = (
    SignalSpec("camera_noise", "forensics", 1, ("<=", 0.1), "low: the camera's own noise everywhere"),
    SignalSpec("steady", "temporal", 1, ("<=", 0.2), "low: the face moves with its surroundings"),
    SignalSpec("sharp", "quality", -1, (">=", 0.9), "high: the face is as sharp as its surroundings"),
    SignalSpec("bitrate", "quality", 0, None, "context only, never a cue"),
)
TWO_CUES = {"camera_noise": 0.05, "steady": 0.1, "sharp": 0.5, "bitrate": 3.0}
ONE_CUE = {"camera_noise": 0.05, "steady": 0.6, "sharp": 0.5}


def test_two_cues_cap_and_are_named() -> None:
    assert MIN_REAL_CUES == 2
    override = forensic_real_cap(0.9, TWO_CUES, CATALOGUE, cap=0.4)
    assert override is not None
    assert (override.kind, override.before, override.after) == (FORENSIC_REAL_CAP, 0.9, 0.4)
    assert override.cues == ("camera_noise", "steady")
    assert "camera_noise, steady" in override.reason


def test_one_cue_alone_does_not_cap() -> None:
    assert forensic_real_cap(0.9, ONE_CUE, CATALOGUE) is None
    assert forensic_real_cap(0.9, ONE_CUE, CATALOGUE, min_cues=1) is not None


def test_nan_and_absent_values_are_no_cue() -> None:
    assert forensic_real_cap(0.9, {"camera_noise": 0.05, "steady": math.nan}, CATALOGUE) is None
    assert forensic_real_cap(0.9, {"sharp": 0.95}, CATALOGUE) is None


def test_a_score_at_or_below_the_cap_is_left_alone() -> None:
    assert forensic_real_cap(0.4, TWO_CUES, CATALOGUE, cap=0.4) is None
    with pytest.raises(ValueError):
        forensic_real_cap(0.9, TWO_CUES, CATALOGUE, min_cues=0)


def test_the_cues_survive_the_stored_result() -> None:
    override = forensic_real_cap(0.9, TWO_CUES, CATALOGUE)
    assert override is not None
    stored = json.loads(json.dumps({"applied": [override.to_dict()]}))
    assert stored["applied"][0]["cues"] == ["camera_noise", "steady"]
    assert read_overrides(stored) == (override,)
    # An override without cues is stored as before they existed.
    assert "cues" not in Override("k", "r", 0.9, 0.4).to_dict()


MEMBERS = [MemberSpec("m", "mean", 1.0)]
FUSION = FusionSpec("weighted_average", 0.3, 0.7, 1)
FRAMES = {"m": {0: [0.9, 0.95]}}


def test_score_video_caps_at_the_calibrations_real_cap_when_cues_agree() -> None:
    state = CalibrationState("v3", {}, {}, frozenset(), real_cap=0.35)
    capped = score_video(FRAMES, MEMBERS, FUSION, state, signals=SignalReport(TWO_CUES), catalogue=CATALOGUE)
    assert (capped.score, capped.raw_fused, capped.verdict) == (0.35, 0.925, Verdict.UNCERTAIN)
    assert [(o.kind, o.cues) for o in capped.overrides] == [(FORENSIC_REAL_CAP, ("camera_noise", "steady"))]
    assert capped.to_dict()["overrides"][0]["cues"] == ["camera_noise", "steady"]

    uncapped = score_video(FRAMES, MEMBERS, FUSION, state, signals=SignalReport(ONE_CUE), catalogue=CATALOGUE)
    assert (uncapped.score, uncapped.verdict, uncapped.overrides) == (0.925, Verdict.FAKE, ())


def test_without_a_calibration_the_default_real_cap_applies() -> None:
    capped = score_video(FRAMES, MEMBERS, FUSION, signals=SignalReport(TWO_CUES), catalogue=CATALOGUE)
    assert capped.score == CalibrationState.real_cap == 0.40


def test_a_moderators_label_still_wins_over_the_cues() -> None:
    result = score_video(
        FRAMES, MEMBERS, FUSION, known_label="FAKE", signals=SignalReport(TWO_CUES), catalogue=CATALOGUE
    )
    assert [o.kind for o in result.overrides] == [FORENSIC_REAL_CAP, "known_content"]
    assert (result.score, result.verdict) == (1.0, Verdict.FAKE)


def test_out_of_scope_media_is_not_applicable_unless_a_moderator_labelled_it() -> None:
    scoped = SignalReport(ONE_CUE, scope="faces_too_small")
    judged = score_video(FRAMES, MEMBERS, FUSION, signals=scoped, catalogue=CATALOGUE)
    assert judged.verdict is Verdict.NOT_APPLICABLE and judged.score == pytest.approx(0.925)  # the scores stay
    labelled = score_video(FRAMES, MEMBERS, FUSION, known_label="REAL", signals=scoped, catalogue=CATALOGUE)
    assert labelled.verdict is Verdict.REAL
    in_scope = score_video(FRAMES, MEMBERS, FUSION, signals=SignalReport(ONE_CUE), catalogue=CATALOGUE)
    assert in_scope.verdict is Verdict.FAKE
