"""Start-up refuses an inconsistent timeout chain: task_time_limit < lease < visibility_timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.env import SettingsError
from core.settings import load_settings


@pytest.mark.parametrize(("limit", "lease", "visibility"), [(900, 900, 1800), (900, 1200, 1000), (2000, 1200, 1800)])
def test_inconsistent_timeouts_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, limit: int, lease: int, visibility: int
) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("VERITY_TASK_TIME_LIMIT_S", str(limit))
    monkeypatch.setenv("VERITY_LEASE_S", str(lease))
    monkeypatch.setenv("VERITY_VISIBILITY_TIMEOUT_S", str(visibility))
    with pytest.raises(SettingsError, match="inconsistent timeouts"):
        load_settings()


def test_visibility_timeout_reaches_every_place_celery_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from core.queue import make_celery

    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:6379/9")
    settings = load_settings()
    conf = make_celery(settings).conf
    assert conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout_s
    assert conf.result_backend_transport_options["visibility_timeout"] == settings.visibility_timeout_s
    assert conf.task_time_limit < settings.lease_s < settings.visibility_timeout_s
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1


def test_face_keyframe_interval_must_be_positive(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("VERITY_FACE_KEYFRAME_EVERY", "1")
    assert load_settings().face_keyframe_every == 1
    monkeypatch.setenv("VERITY_FACE_KEYFRAME_EVERY", "0")
    with pytest.raises(SettingsError, match="VERITY_FACE_KEYFRAME_EVERY"):
        load_settings()


def test_outages_are_retried_for_ten_minutes_or_more_by_default(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    settings = load_settings()
    assert settings.outage_retry_budget_s >= 600
    assert 0 < settings.outage_max_backoff_s <= settings.outage_retry_budget_s


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"VERITY_OUTAGE_RETRY_BUDGET_S": "0"}, "VERITY_OUTAGE_RETRY_BUDGET_S must be a positive"),
        ({"VERITY_OUTAGE_RETRY_BUDGET_S": "nan"}, "VERITY_OUTAGE_RETRY_BUDGET_S must be a positive"),
        ({"VERITY_OUTAGE_MAX_BACKOFF_S": "0"}, "VERITY_OUTAGE_MAX_BACKOFF_S"),
        ({"VERITY_OUTAGE_RETRY_BUDGET_S": "20", "VERITY_OUTAGE_MAX_BACKOFF_S": "30"}, "at most VERITY_OUTAGE_RETRY"),
        ({"VERITY_OUTAGE_MAX_BACKOFF_S": "301"}, "a third of VERITY_TASK_TIME_LIMIT_S"),  # the limit is 900
        ({"VERITY_DB_RETRY_S": "120"}, "replaced by VERITY_OUTAGE_RETRY_BUDGET_S"),
    ],
)
def test_bad_outage_retry_settings_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str], match: str
) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=match):
        load_settings()


def test_recalibration_knobs_log_format_and_schedule_are_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from core.scoring.recalibration_config import RecalibrationConfig

    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    defaults = load_settings()
    assert defaults.recalibration == RecalibrationConfig()
    assert defaults.recalibrate_interval_s == 0 and not defaults.recalibrate_auto_activate
    assert defaults.log_format == "text"  # embedded
    for name, value in {
        "VERITY_RECAL_TARGET_FPR": "0.1",
        "VERITY_RECAL_UNCERTAIN_BAND": "0.2",
        "VERITY_RECAL_HELD_OUT": "0.25",
        "VERITY_RECAL_MIN_PER_CLASS": "7",
        "VERITY_RECAL_MIN_ISOTONIC": "30",
        "VERITY_RECAL_METHOD": "noisy_or",
        "VERITY_RECAL_SEED": "3",
        "VERITY_RECALIBRATE_INTERVAL_S": "3600",
        "VERITY_RECALIBRATE_AUTO_ACTIVATE": "yes",
        "VERITY_LOG_FORMAT": "JSON",
        "VERITY_WEIGHTS_DIR": str(tmp_path / "weights"),
    }.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.recalibration == RecalibrationConfig(
        target_fpr=0.1,
        uncertain_band=0.2,
        held_out_fraction=0.25,
        min_per_class=7,
        min_isotonic_labels=30,
        fusion_method="noisy_or",
        seed=3,
    )
    assert settings.recalibrate_interval_s == 3600 and settings.recalibrate_auto_activate
    assert settings.log_format == "json" and settings.weights_dir == tmp_path / "weights"


def test_log_format_defaults_to_json_with_postgres(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.delenv("VERITY_LOG_FORMAT", raising=False)
    monkeypatch.setenv("DATABASE_URL", "postgres://verity@127.0.0.1/verity")
    assert load_settings().log_format == "json"


@pytest.mark.parametrize(
    ("name", "value", "match"),
    [
        ("VERITY_RECAL_TARGET_FPR", "low", "VERITY_RECAL_TARGET_FPR: must be a number, got 'low'"),
        ("VERITY_RECAL_TARGET_FPR", "2", r"VERITY_RECAL_TARGET_FPR: target_fpr must be in \(0, 1\)"),
        ("VERITY_RECAL_HELD_OUT", "0.9", "VERITY_RECAL_HELD_OUT: held_out_fraction must be in"),
        ("VERITY_RECAL_MIN_PER_CLASS", "2.5", "VERITY_RECAL_MIN_PER_CLASS: must be an integer"),
        ("VERITY_RECAL_MIN_PER_CLASS", "3", "VERITY_RECAL_MIN_PER_CLASS: min_per_class must be >= 5"),
        ("VERITY_RECAL_METHOD", "median", "VERITY_RECAL_METHOD: fusion_method must be one of"),
        ("VERITY_RECAL_SEED", "x", "VERITY_RECAL_SEED: must be an integer"),
        ("VERITY_RECALIBRATE_INTERVAL_S", "hourly", "VERITY_RECALIBRATE_INTERVAL_S must be a number"),
        ("VERITY_RECALIBRATE_INTERVAL_S", "-5", "VERITY_RECALIBRATE_INTERVAL_S must be a number of seconds"),
        ("VERITY_LOG_FORMAT", "xml", "VERITY_LOG_FORMAT must be json or text, got 'xml'"),
    ],
)
def test_invalid_new_settings_are_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str, match: str
) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=match):
        load_settings()
