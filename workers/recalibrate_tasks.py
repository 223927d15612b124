"""The ``verity.recalibrate`` Celery task (io queue) and its optional beat entry.

Include it in the worker (``app.conf.include``). With VERITY_RECALIBRATE_INTERVAL_S set, beat fits a new
candidate that often, only when the labels changed since the newest version; it activates the candidate
only when VERITY_RECALIBRATE_AUTO_ACTIVATE is on *and* its held-out metrics beat the current setup's.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from core.pack_defaults import pack_defaults
from core.scoring.recalibration_types import NotEnoughLabels
from core.settings import Settings, get_settings
from core.vocabulary import TaskName
from db import calibrations
from workers.celery_app import app

log = logging.getLogger(__name__)


def recalibrate_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat entries: a scheduled fit every ``recalibrate_interval_s`` seconds (0: none)."""
    if settings.recalibrate_interval_s <= 0:
        return {}
    return {
        "recalibrate": {"task": TaskName.RECALIBRATE, "schedule": timedelta(seconds=settings.recalibrate_interval_s)}
    }


# Beat imports the worker's include modules before it reads the schedule, so the entry can live here.
app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **recalibrate_schedule(get_settings())}


@app.task(name=TaskName.RECALIBRATE)
def recalibrate(auto_activate: bool | None = None, skip_if_unchanged: bool = True, **overrides: Any) -> dict[str, Any]:
    """Fit a candidate from the current feedback; too few labels is a logged no-op, not a failure."""
    settings = get_settings()
    try:
        view = calibrations.fit(
            calibrations.sql_store,
            pack_defaults(settings.pack_manifest),
            settings.recalibration.with_overrides(**overrides),
            auto_activate=settings.recalibrate_auto_activate if auto_activate is None else auto_activate,
            skip_if_unchanged=skip_if_unchanged,
        )
    except NotEnoughLabels as exc:
        log.info("recalibration skipped: %s", exc)
        return {"skipped": str(exc), **exc.to_dict()}
    if "skipped" in view:
        log.info("recalibration skipped: %s", view["skipped"])
        return view
    return {"version": view["version"], "status": view["status"], "better": view["metrics"].get("better")}
