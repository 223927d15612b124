"""Start-up refuses an inconsistent timeout chain: task_time_limit < lease < visibility_timeout."""

from __future__ import annotations

import pytest

from core.settings import SettingsError, load_settings


@pytest.mark.parametrize(("limit", "lease", "visibility"), [(900, 900, 1800), (900, 1200, 1000), (2000, 1200, 1800)])
def test_inconsistent_timeouts_are_refused(monkeypatch: pytest.MonkeyPatch, tmp_path, limit, lease, visibility) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("VERITY_TASK_TIME_LIMIT_S", str(limit))
    monkeypatch.setenv("VERITY_LEASE_S", str(lease))
    monkeypatch.setenv("VERITY_VISIBILITY_TIMEOUT_S", str(visibility))
    with pytest.raises(SettingsError, match="inconsistent timeouts"):
        load_settings()


def test_visibility_timeout_reaches_every_place_celery_reads_it(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from core.queue import make_celery

    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:6379/9")
    settings = load_settings()
    conf = make_celery(settings).conf
    assert conf.broker_transport_options["visibility_timeout"] == settings.visibility_timeout_s
    assert conf.result_backend_transport_options["visibility_timeout"] == settings.visibility_timeout_s
    assert conf.task_time_limit < settings.lease_s < settings.visibility_timeout_s
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and conf.worker_prefetch_multiplier == 1


def test_face_keyframe_interval_reaches_the_pipeline_and_must_be_positive(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    from workers.resources import pipeline_config

    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("VERITY_FACE_KEYFRAME_EVERY", "1")
    assert pipeline_config(load_settings(), "cpu").face_keyframe_every == 1
    monkeypatch.setenv("VERITY_FACE_KEYFRAME_EVERY", "0")
    with pytest.raises(SettingsError, match="VERITY_FACE_KEYFRAME_EVERY"):
        load_settings()


def test_outages_are_retried_for_ten_minutes_or_more_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
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
    monkeypatch: pytest.MonkeyPatch, tmp_path, env: dict[str, str], match: str
) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=match):
        load_settings()
