"""The worker builds its pipeline configuration from the settings (torch side: workers.resources)."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import load_settings
from workers.resources import pipeline_config


def test_face_keyframe_interval_reaches_the_pipeline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("VERITY_FACE_KEYFRAME_EVERY", "3")
    assert pipeline_config(load_settings(), "cpu").face_keyframe_every == 3
