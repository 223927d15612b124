import argparse
from pathlib import Path

import pytest

from client.simulate_cli import describe, parse_strategy, read_labels, request_body
from client.simulate_plot import simulation_png
from client.types import SimulationJson, SimulationStrategyJson


def strategy(name: str, kind: str, tpr: float | None, first: float | None) -> SimulationStrategyJson:
    return {
        "name": name,
        "kind": kind,
        "strategy": None if kind == "whole_file" else {"kind": kind, "window": 27},
        "fps": 2.0,
        "t_low": 0.9967,
        "t_high": 0.998248,
        "videos": 2,
        "real": 1,
        "fake": 1,
        "tpr": tpr,
        "tnr": 1.0,
        "fpr": 0.0,
        "fpr_any_time": 0.0,
        "uncertain_rate": 0.0,
        "undecided_rate": 0.5 if first is None else 0.0,
        "mean_first_decision_s": first,
        "mean_stable_s": first,
        "mean_flips": 0.5,
        "max_flips": 1,
        "videos_over_flip_limit": 0,
        "latency": {
            "fps": 2.0,
            "frame_budget_ms": 500.0,
            "per_frame_ms": 250.0,
            "limit_ms": 200.0,
            "warnings": ["250 ms per frame is over the 200 ms per-frame limit"],
        },
    }


REPORT: SimulationJson = {
    "videos": 2,
    "real": 1,
    "fake": 1,
    "flip_limit": 5,
    "label_source": "feedback",
    "calibration_version": "v3",
    "without_frame_scores": 1,
    "unmatched_labels": [],
    "strategies": [strategy("option_a", "window", 1.0, 13.5), strategy("whole_file", "whole_file", None, None)],
    "timelines": [
        {
            "video_id": "0f1e",
            "name": "clip.mp4",
            "label": "FAKE",
            "outcomes": [
                {
                    "strategy": "option_a",
                    "final": "FAKE",
                    "first_decision_s": 1.0,
                    "stable_s": 1.5,
                    "flips": 1,
                    "points": [
                        {"t": 0.0, "score": None, "verdict": None},
                        {"t": 0.5, "score": 0.9971, "verdict": "UNCERTAIN"},
                        {"t": 1.0, "score": 0.9990, "verdict": "FAKE"},
                    ],
                },
                {
                    "strategy": "whole_file",
                    "final": None,
                    "first_decision_s": None,
                    "stable_s": None,
                    "flips": 0,
                    "points": [{"t": 0.0, "score": None, "verdict": None}, {"t": 1.0, "score": None, "verdict": None}],
                },
            ],
        }
    ],
    "fit": None,
}


def test_a_strategy_spec_becomes_the_request_object() -> None:
    assert parse_strategy("whole_file") == {"name": "whole_file", "kind": "whole_file"}
    assert parse_strategy("b=per_frame,averaging=ema,ema_alpha=0.5,min_frames=3,agg.meso4_df=topk:4") == {
        "name": "b",
        "kind": "per_frame",
        "averaging": "ema",
        "ema_alpha": 0.5,
        "min_frames": 3,
        "aggregators": {"meso4_df": "topk:4"},
    }
    for bad, message in (("a=sliding", "kind must be"), ("window,colour=red", "unknown key"), ("window,fps", "KEY=")):
        with pytest.raises(argparse.ArgumentTypeError, match=message):
            parse_strategy(bad)


def test_a_labels_csv_takes_job_ids_file_names_or_hashes(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("path,label,sha256\nvideos/a.mp4,fake,abc\n")
    assert read_labels(path) == [{"label": "FAKE", "sha256": "abc"}]
    path.write_text("job_id,filename,label\n,b.mp4,REAL\nj1,,FAKE\n")
    assert read_labels(path) == [{"label": "REAL", "filename": "b.mp4"}, {"label": "FAKE", "job_id": "j1"}]
    path.write_text("filename,label\nb.mp4,MAYBE\n")
    with pytest.raises(ValueError, match=r"labels.csv:2: label must be REAL or FAKE"):
        read_labels(path)
    path.write_text("filename,label\n,REAL\n")
    with pytest.raises(ValueError, match="give one of"):
        read_labels(path)


def test_the_request_carries_only_what_was_asked() -> None:
    args = argparse.Namespace(
        fps=2.0,
        window=27,
        timelines=4,
        strategy=None,
        calibration_version=None,
        per_frame_ms=None,
        max_videos=None,
        fit_target_fpr=0.05,
        uncertain_band=0.1,
        save_thresholds=True,
    )
    assert request_body(args, None) == {
        "fps": 2.0,
        "window": 27,
        "timelines": 4,
        "fit_per_frame": {"target_fpr": 0.05, "uncertain_band": 0.1, "save": True},
    }


def test_the_table_puts_strategies_side_by_side() -> None:
    text = describe(REPORT)
    lines = text.splitlines()
    assert lines[0].startswith("2 labelled videos (1 REAL, 1 FAKE; labels from moderator feedback)")
    assert "1 labelled jobs left out: no stored frame scores" in text
    assert next(line for line in lines if line.startswith("TPR ")).split() == ["TPR", "100.0%", "-"]
    assert next(line for line in lines if line.startswith("first decision")).split()[-2:] == ["13.5", "-"]
    assert text.count("warning: 250 ms per frame is over the 200 ms per-frame limit") == 1


def test_the_picture_is_a_png() -> None:
    assert simulation_png(REPORT).startswith(b"\x89PNG\r\n\x1a\n")
