"""The ``verity.recalibrate`` Celery task (io queue) and its optional beat entry.

Include it in the worker (``app.conf.include``). With VERITY_RECALIBRATE_INTERVAL_S set, beat fits a new
candidate that often, only when the labels changed since the newest version; it activates the candidate
only when VERITY_RECALIBRATE_AUTO_ACTIVATE is on *and* its held-out metrics beat the current setup's.
"""

from __future__ import annotations

import logging
from typing import Any

from core.vocabulary import TaskName
from workers.celery_app import app
from workers.recalibrate import NotEnoughLabels, auto_activate_default, config_from_env, fit, recalibrate_schedule

log = logging.getLogger(__name__)

# Beat imports the worker's include modules before it reads the schedule, so the entry can live here.
app.conf.beat_schedule = {**(app.conf.beat_schedule or {}), **recalibrate_schedule()}


@app.task(name=TaskName.RECALIBRATE)
def recalibrate(auto_activate: bool | None = None, skip_if_unchanged: bool = True, **overrides: Any) -> dict[str, Any]:
    """Fit a candidate from the current feedback; too few labels is a logged no-op, not a failure."""
    try:
        view = fit(
            config_from_env(**overrides),
            auto_activate=auto_activate_default() if auto_activate is None else auto_activate,
            skip_if_unchanged=skip_if_unchanged,
        )
    except NotEnoughLabels as exc:
        log.info("recalibration skipped: %s", exc)
        return {"skipped": str(exc), **exc.to_dict()}
    if "skipped" in view:
        log.info("recalibration skipped: %s", view["skipped"])
        return view
    return {"version": view["version"], "status": view["status"], "better": view["metrics"].get("better")}
