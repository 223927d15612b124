"""Celery tasks: detect (gpu queue), deliver_webhook / relay_webhooks / reap (io queue)."""

from __future__ import annotations

import logging
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from db.media.errors import MediaError
from db.queue import DELIVER_WEBHOOK_TASK, DETECT_TASK, REAP_TASK, RELAY_WEBHOOKS_TASK, enqueue_webhook
from db.settings import get_settings
from db.storage import StorageError, get_store
from workers import job_store, payloads, reaper, recalibrate, webhooks
from workers.celery_app import app
from workers.job_store import Claim

log = logging.getLogger(__name__)


class FencedOff(Exception):
    """This attempt no longer owns the job (lease taken over or job cancelled)."""


def _send_webhook(delivery_id: Any) -> None:
    if not delivery_id:
        return
    try:
        enqueue_webhook(str(delivery_id))
    except Exception as exc:  # the relay picks the row up from Postgres
        log.warning("could not enqueue webhook %s: %s", delivery_id, exc)


def _fail(claim: Claim, code: str, message: str) -> None:
    log.info("job %s failed: %s: %s", claim.job_id, code, message)
    _send_webhook(job_store.fail(claim, code, message, payloads.failed(claim.job_id, code, message)))


def _process(claim: Claim) -> None:
    from workers.resources import get_resources  # torch-heavy; io workers never import it

    settings = get_settings()

    def progress(stage: str, fraction: float) -> None:
        if not job_store.heartbeat(claim, stage, fraction, settings.lease_s):
            raise FencedOff(f"attempt {claim.attempt} lost job {claim.job_id}")

    progress("downloading", 0.01)
    with tempfile.TemporaryDirectory(prefix="verity-job-") as tmp:
        path = Path(tmp) / "input"
        get_store().download_to(claim.input_key, path)
        progress("loading_models", 0.03)
        resources = get_resources()
        config = resources.config
        config = replace(
            config,
            max_frames=int(claim.params.get("max_frames", config.max_frames)),
            sampling=str(claim.params.get("sampling", config.sampling)),
        )
        from workers.pipeline import pack_fusion_spec, run_pipeline  # torch-heavy; io workers never import it

        # One read of the active version, so its calibrators and its thresholds always go together.
        current = recalibrate.active()
        output = run_pipeline(
            path,
            resources.faces,
            resources.pack,
            config,
            calibration=None if current is None else current.state,
            fusion=None if current is None else current.fusion_spec(pack_fusion_spec(resources.pack)),
            known_label=job_store.known_label(claim),
            progress=progress,
        )
    progress("saving", 0.95)
    outcome = job_store.complete(
        claim, output.result, output.frame_rows, payloads.succeeded(claim.job_id, output.result)
    )
    if outcome is False:
        raise FencedOff(f"attempt {claim.attempt} lost job {claim.job_id} before saving")
    log.info("job %s: %s (score %s)", claim.job_id, output.result["verdict"], output.result["score"])
    _send_webhook(outcome)


@app.task(name=DETECT_TASK, bind=True)
def detect(self: Task, job_id: str) -> None:
    settings = get_settings()
    claim = job_store.claim(job_id, settings.lease_s)
    if claim is None:
        log.info("job %s is not claimable (finished, cancelled or owned by a live attempt)", job_id)
        return
    try:
        _process(claim)
    except FencedOff as exc:
        log.warning("%s", exc)
    except MediaError as exc:
        _fail(claim, exc.code, exc.message)
    except SoftTimeLimitExceeded:
        _fail(claim, "TIMEOUT", f"processing took longer than {settings.task_time_limit_s} s")
    except StorageError as exc:
        _retry_or_fail(self, claim, "STORAGE_UNAVAILABLE", str(exc))
    except Exception as exc:
        log.exception("job %s attempt %s crashed", claim.job_id, claim.attempt)
        _retry_or_fail(self, claim, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}")


def _retry_or_fail(task: Task, claim: Claim, code: str, message: str) -> None:
    settings = get_settings()
    if claim.attempt >= settings.max_attempts:
        _fail(claim, code, f"{message} (after {claim.attempt} attempts)")
        return
    if job_store.release(claim, message):
        task.apply_async(args=[str(claim.job_id)], countdown=10 * claim.attempt, queue="gpu")


@app.task(name=DELIVER_WEBHOOK_TASK)
def deliver_webhook(delivery_id: str) -> str | None:
    return webhooks.deliver(delivery_id, get_settings())


@app.task(name=RELAY_WEBHOOKS_TASK)
def relay_webhooks() -> int:
    """Retries are scheduled in Postgres (next_attempt_at), not as broker ETAs; this sends the due ones."""
    settings = get_settings()
    sent = 0
    for delivery_id in webhooks.due_deliveries():
        if webhooks.deliver(delivery_id, settings) is not None:
            sent += 1
    return sent


@app.task(name=REAP_TASK)
def reap() -> dict[str, list[str]]:
    report = reaper.reap(get_settings())
    return {"enqueued": report.enqueued, "failed": report.failed}
