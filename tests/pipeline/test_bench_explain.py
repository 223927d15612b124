"""``tools.bench --explain``: each Verity run also makes the heatmaps an explain=true job makes, as its own stage."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.conftest import shared_file
from tools import bench

SHORT_CLIP = "videos/real/liveportrait_d0.mp4"  # 3 s, 512x512, one face


def test_explain_is_its_own_stage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path / "home"))  # the generated webhook secret stays out of the repo
    out = io.StringIO()
    argv = ["--clips", str(shared_file(SHORT_CLIP)), "--frames", "4", "--device", "cpu", "--explain", "2"]
    document = bench.main([*argv, "--no-naive", "--no-storage"], out=out)

    assert document["config"]["explain_frames"] == 2
    [run] = document["clips"][0]["runs"]
    assert run["faces"] > 0 and run["stages"]["explain"] > 0
    assert document["summary"]["stages"]["explain"]["verity"] > 0
    assert "\nexplain " in out.getvalue()
