import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from core.signals import SignalSpec
from tools.evaluate_cv import (
    APPROACHES,
    FUSED_STACKER,
    GROUPS_FILE,
    SIGNAL_STACKER,
    EvalClip,
    clips_from_rows,
    cross_validate,
    cv_lines,
    format_report,
    identity_folds,
    identity_groups,
    read_groups,
)

CATALOGUE = (
    SignalSpec("telling", "forensics", 1, None, "separates the classes"),
    SignalSpec("gone", "temporal", 1, None, "never computed"),
)


def _clips(n_groups: int, seed: int = 0) -> tuple[list[EvalClip], list[str]]:
    """Groups of one real and one or two fakes made from it, as in the test clips."""
    rng = np.random.default_rng(seed)
    clips: list[EvalClip] = []
    groups: list[str] = []
    for g in range(n_groups):
        for k, label in enumerate([0, 1] if g % 2 else [0, 1, 1]):
            telling = 2.0 * label + rng.normal(scale=0.5)
            model = float(np.clip(0.5 + 0.1 * label + rng.normal(scale=0.2), 0.0, 1.0))
            clips.append(EvalClip(f"g{g}/c{k}.mp4", label, {"m": model}, model, {"telling": telling, "gone": math.nan}))
            groups.append(f"g{g}")
    return clips, groups


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_folds_never_split_an_identity_group(seed: int) -> None:
    clips, groups = _clips(14)
    folds = identity_folds([c.label for c in clips], groups, 5, seed)
    seen = Counter(int(i) for fold in folds for i in fold)
    assert sorted(seen) == list(range(len(clips))) and set(seen.values()) == {1}
    fold_of = {int(i): f for f, fold in enumerate(folds) for i in fold}
    for group in set(groups):
        assert len({fold_of[i] for i, g in enumerate(groups) if g == group}) == 1, group


def test_too_few_groups_for_the_folds_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 5 identity groups"):
        identity_folds([0, 1, 0, 1], ["a", "a", "b", "c"], 5, 0)


def test_groups_come_from_the_file_and_unlisted_clips_stand_alone(tmp_path: Path) -> None:
    listed = tmp_path / "groups.csv"
    listed.write_text("path,group,reason\nreal/a.mp4,a,original\nfake/a_b.mp4,a,swap made on real/a\n")
    groups = identity_groups(["real/a.mp4", "fake/a_b.mp4", "real/c.mp4"], read_groups(listed))
    assert groups == ["a", "a", "real/c.mp4"]


def test_a_group_without_a_reason_is_refused(tmp_path: Path) -> None:
    listed = tmp_path / "groups.csv"
    listed.write_text("path,group,reason\nreal/a.mp4,a,\n")
    with pytest.raises(ValueError, match="needs a reason"):
        read_groups(listed)


def test_the_shipped_groups_each_join_several_clips_with_reasons() -> None:
    groups = Counter(read_groups(GROUPS_FILE).values())
    assert groups and min(groups.values()) >= 2


def test_cross_validation_scores_each_clip_once_from_a_fit_without_its_group() -> None:
    clips, groups = _clips(14)
    report = cross_validate(clips, groups, ["m"], n_folds=5, seed=0, catalogue=CATALOGUE)
    assert len(report.folds) == 5
    for approach in APPROACHES:
        assert not any(math.isnan(v) for v in report.out_of_fold[approach])
        assert len(report.fold_auc[approach]) == 5
    # The signal that separates the classes carries both signal fits; the never-computed one is left out.
    assert all(fold.dropped == {"gone": "all_nan"} for fold in report.folds)
    assert report.pooled_auc(SIGNAL_STACKER) > 0.9 and report.pooled_auc(FUSED_STACKER) > 0.9
    lines = format_report(report, ["m"], 0)
    assert any(line.startswith(f"| {SIGNAL_STACKER}") for line in lines)
    assert any(line.startswith("Caveat: ") for line in lines)


def test_rows_without_every_model_are_left_out_and_null_signals_read_as_nan() -> None:
    rows: list[dict[str, Any]] = [
        {"path": "a", "label": "FAKE", "score": 0.7, "per_model": {"m": 0.7}, "signals": {"telling": None}},
        {"path": "b", "label": "REAL", "score": None, "per_model": {}, "signals": {}},
    ]
    (clip,) = clips_from_rows(rows, ["m"])
    assert (clip.label, clip.scores, math.isnan(clip.signals["telling"])) == (1, {"m": 0.7}, True)
    assert cv_lines(rows, ["m"], 5, 0) == [
        "identity-disjoint cross-validation skipped: 5 folds need at least 5 identity groups, have 1"
    ]
