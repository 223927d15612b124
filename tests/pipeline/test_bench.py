"""The benchmark command on real clips: the output's structure and naive/Verity verdict agreement, never timings.

Needs ../shared/testdata (skips without it) and Postgres for the storage round trip's scratch database.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from tests.conftest import PG_ADMIN_URL, shared_file
from tools import bench

SHORT_CLIP = "videos/real/liveportrait_d0.mp4"  # 3 s, 512x512, one face


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings() keeps a generated webhook secret under VERITY_HOME: keep it out of the checkout.
    monkeypatch.setenv("VERITY_HOME", str(tmp_path / "home"))


def test_bench_on_one_short_clip_reports_every_stage_and_matching_verdicts(tmp_path: Path) -> None:
    clip = shared_file(SHORT_CLIP)
    out = io.StringIO()
    argv = ["--clips", str(clip), "--frames", "4", "--repeat", "1", "--device", "cpu", "--pg", PG_ADMIN_URL]
    argv += ["--keyframe-every", "1"]  # every frame searched in full: the naive computation, scores to 1e-3
    document = bench.main([*argv, "--json", str(tmp_path / "bench.json")], out=out)

    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["summary"] == json.loads(json.dumps(document["summary"]))
    summary = saved["summary"]
    assert summary["clips"] == 1
    stages = summary["stages"]
    expected = {"probe", "decode", "faces", "tracks", "crops", "model:meso4_df", "model:mesoinception_df"}
    assert expected | {"fusion", "storage", "total"} <= set(stages)
    for name, row in stages.items():
        assert row["naive"] >= 0 and row["verity"] >= 0, name
        assert "ratio" in row and "verity_share" in row, name
    assert stages["storage"]["naive"] == stages["storage"]["verity"]  # one round trip, counted in both totals
    for variant in ("naive", "verity"):
        overall = summary["overall"][variant]
        assert overall["median_s_per_video"] > 0 and overall["frames_per_s"] > 0 and overall["videos_per_min"] > 0
        assert overall["peak_rss_mb"] > 0 and overall["cuda_peak_mb"] is None

    [row] = summary["verdicts"]
    assert row["clip"] == clip.name and row["label"] == "REAL"
    assert row["same_verdict"] and row["naive"] == row["verity"] != "NO_FACE"
    assert row["max_score_diff"] <= bench.SCORE_TOLERANCE
    assert row["faces"][0] == row["faces"][1] > 0
    assert row["frame_max_abs_diff"] == 0  # OpenCV's seek and PyAV's sequential decode give the same pixels

    [clip_doc] = saved["clips"]
    assert clip_doc["resolution"] == "512x512" and clip_doc["error"] is None
    assert sorted(r["variant"] for r in clip_doc["runs"]) == ["naive", "verity"]
    assert all(r["frames"] == 4 for r in clip_doc["runs"])

    text = out.getvalue()
    assert "naive/verity" in text and "same verdict: 1/1" in text and "(every frame searched at full size): 1/1" in text


def test_verity_only_run_over_two_clips_measures_the_prefetching_loop() -> None:
    folder = shared_file(SHORT_CLIP).parent
    out = io.StringIO()
    document = bench.main(
        ["--clips", str(folder / "liveportrait_d1[18].mp4"), "--frames", "2", "--no-naive", "--no-storage"],
        out=out,
    )
    summary = document["summary"]
    assert summary["clips"] == 2 and list(summary["overall"]) == ["verity"]
    assert summary["verdicts"] == []
    assert "storage" not in summary["stages"] and "ratio" not in summary["stages"]["total"]
    for loop in ("sequential", "prefetch_next_decode"):
        assert summary["throughput"][loop]["videos_per_min"] > 0
    assert "decoding the next video during inference" in out.getvalue()


def test_full_size_pack_runs_every_seed_member_through_the_bench(tmp_path: Path) -> None:
    # The GPU measurement's command (`--device cuda --full-size-pack seed-deepfakebench`), here on CPU with two
    # frames: the seed pack's four members, built from their formats with random weights (no checkpoints), go
    # through the real pipeline, each fed its own crops, and are then timed one by one.
    out = io.StringIO()
    document = bench.main(
        [
            *("--clips", str(shared_file(SHORT_CLIP)), "--frames", "2", "--device", "cpu"),
            *("--full-size-pack", "--no-naive", "--no-storage", "--json", str(tmp_path / "bench.json")),
        ],
        out=out,
    )
    seed = {"xception": 256, "efficientnetb4": 256, "f3net": 256, "effort": 224}
    stages = document["summary"]["stages"]
    assert all(stages[f"model:{name}"]["verity"] > 0 for name in seed)

    members = json.loads((tmp_path / "bench.json").read_text())["summary"]["members"]
    assert members["clip"] == Path(SHORT_CLIP).name
    rows = {r["member"]: r for r in members["rows"]}
    assert {name: r["input_size"] for name, r in rows.items()} == seed
    for name, r in rows.items():
        assert r["format"] == f"deepfakebench_{name}" and r["crop"] == "square_1.3", name
        assert r["crops"] == 2 and r["s_per_crop"] > 0 and r["cuda_peak_growth_mb"] is None, name
        assert r["weights_mb"] > 0 and r["peak_rss_growth_mb"] >= 0, name
    assert rows["effort"]["weights_mb"] > 1000  # CLIP ViT-L/14 at full size: ~303M float32 parameters

    text = out.getvalue()
    assert "seed-deepfakebench full-size random weights (TIMING ONLY)" in text
    assert "per member, alone on the crops the pipeline fed it" in text
    for name, size in seed.items():
        row = [name, f"deepfakebench_{name}", "square_1.3", str(size)]
        assert any(line.split()[:4] == row for line in text.splitlines()), name


def test_full_size_pack_takes_a_shipped_pack_by_name_or_path() -> None:
    # No network is built here: only which manifest the flag names.
    assert bench.parse_args(["--full-size-pack"]).full_size_pack == "seed-deepfakebench"
    assert bench.parse_args(["--full-size-pack", "dfdc-winner"]).full_size_pack == "dfdc-winner"
    assert bench.shipped_pack("dfdc-winner") == bench.PACKS_DIR / "dfdc-winner.yaml"
    assert bench.shipped_pack("elsewhere/pack.yaml") == Path("elsewhere/pack.yaml")
