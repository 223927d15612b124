"""Celery tasks: detect (gpu queue), deliver_webhook / relay_webhooks / reap (io queue)."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from db.media.errors import MediaError
from db.queue import DELIVER_WEBHOOK_TASK, DETECT_TASK, REAP_TASK, RELAY_WEBHOOKS_TASK, enqueue_webhook
from db.settings import Settings, get_settings
from db.storage import StorageError, get_store
from workers import job_store, payloads, reaper, recalibrate, webhooks
from workers.celery_app import app
from workers.job_store import Claim

log = logging.getLogger(__name__)


# A redelivered message can arrive a moment before Postgres has noticed that the killed owner's connection is
# gone and dropped its liveness lock; wait this long for the lock before leaving the job to its owner.
TAKEOVER_WAIT_S = 3.0


class FencedOff(Exception):
    """This attempt no longer owns the job (lease taken over or job cancelled)."""


class LeaseKeeper:
    """Renews the lease every ``heartbeat_interval_s`` from a background thread, whatever stage the job is in,
    and re-takes the liveness lock if a database restart dropped it; the pipeline's stage changes beat too.

    A transient database error only skips a beat: the lease outlasts several, and the final write is fenced.
    """

    def __init__(self, claim: Claim, lock: job_store.OwnerLock, settings: Settings) -> None:
        self.claim = claim
        self.lock = lock
        self.settings = settings
        self.lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{claim.job_id}", daemon=True)

    def __enter__(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def beat(self, stage: str | None = None, fraction: float | None = None) -> None:
        try:
            owned = job_store.heartbeat(self.claim, stage, fraction, self.settings.lease_s)
        except Exception as exc:
            if not job_store.is_transient(exc):
                raise
            log.warning("heartbeat for job %s skipped, database unavailable: %s", self.claim.job_id, str(exc)[:200])
            return
        if not owned:
            self.lost = True

    def _run(self) -> None:
        while not self._stop.wait(self.settings.heartbeat_interval_s) and not self.lost:
            try:
                self.beat()
                if self.lock.enabled:
                    self.lock.acquire()
            except Exception:  # never let the keeper die silently; the next beat tries again
                log.exception("heartbeat for job %s failed", self.claim.job_id)


def _send_webhook(delivery_id: Any) -> None:
    if not delivery_id:
        return
    try:
        enqueue_webhook(str(delivery_id))
    except Exception as exc:  # the relay picks the row up from Postgres
        log.warning("could not enqueue webhook %s: %s", delivery_id, exc)


def _fail(claim: Claim, code: str, message: str) -> None:
    settings = get_settings()
    outcome = job_store.fail(claim, code, message, payloads.failed(claim.job_id, code, message), settings.db_retry_s)
    if outcome is False:  # job_store.fail logged it
        return
    log.info("job %s failed: %s: %s", claim.job_id, code, message)
    _send_webhook(outcome)


def _process(claim: Claim, keeper: LeaseKeeper) -> None:
    from workers.resources import get_resources  # torch-heavy; io workers never import it

    settings = get_settings()

    def progress(stage: str, fraction: float) -> None:
        keeper.beat(stage, fraction)
        if keeper.lost:
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
        claim, output.result, output.frame_rows, payloads.succeeded(claim.job_id, output.result), settings.db_retry_s
    )
    if outcome is False:
        raise FencedOff(f"attempt {claim.attempt} lost job {claim.job_id} before saving")
    log.info("job %s: %s (score %s)", claim.job_id, output.result["verdict"], output.result["score"])
    _send_webhook(outcome)


def _take(job_id: uuid.UUID, lock: job_store.OwnerLock, settings: Settings) -> job_store.Taken:
    """Lock first, then claim: a live owner always holds the lock, so getting it means any owner is gone."""
    deadline = time.monotonic() + TAKEOVER_WAIT_S
    while True:
        owner_gone = lock.acquire()
        taken = job_store.take(
            str(job_id),
            settings.lease_s,
            max_attempts=settings.max_attempts,
            owner_gone=owner_gone,
            retry_s=settings.db_retry_s,
        )
        if taken.reason != "owned" or owner_gone or not lock.enabled or time.monotonic() > deadline:
            return taken
        time.sleep(0.25)


@app.task(name=DETECT_TASK, bind=True)
def detect(self: Task, job_id: str) -> None:
    settings = get_settings()
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        log.error("detect called with a malformed job id %r", job_id)
        return
    lock = job_store.OwnerLock(jid)
    try:
        try:
            taken = _take(jid, lock, settings)
        except Exception as exc:
            if not job_store.is_transient(exc):
                raise
            # Acking now would leave the job QUEUED until the reaper's visibility-timeout resend; back in the
            # queue it is tried again (after another VERITY_DB_RETRY_S of retries) once the database is back.
            log.error("job %s: database unavailable, returning the message to the queue", job_id)
            raise Reject(str(exc)[:200], requeue=True) from exc
        if taken.claim is None:
            log.info("job %s is not claimable: %s", job_id, taken.reason)
            _send_webhook(taken.delivery_id)
            return
        log.info("job %s claimed as attempt %s", job_id, taken.claim.attempt)
        with LeaseKeeper(taken.claim, lock, settings) as keeper:
            _run(self, taken.claim, keeper, settings)
    finally:
        lock.release()  # after the final write: the job is never RUNNING with its lock free while we live


def _run(task: Task, claim: Claim, keeper: LeaseKeeper, settings: Settings) -> None:
    try:
        _process(claim, keeper)
    except FencedOff as exc:
        log.warning("%s", exc)
    except MediaError as exc:
        _fail(claim, exc.code, exc.message)
    except SoftTimeLimitExceeded:
        _fail(claim, "TIMEOUT", f"processing took longer than {settings.task_time_limit_s} s")
    except StorageError as exc:
        _retry_or_fail(task, claim, "STORAGE_UNAVAILABLE", str(exc))
    except Exception as exc:
        if job_store.is_transient(exc):
            # Nothing can be recorded while the database is down; once it is back, the reaper sees a RUNNING
            # job with a stale heartbeat and a free lock and hands it back.
            log.error("job %s attempt %s: database unavailable, leaving it to the reaper", claim.job_id, claim.attempt)
            return
        log.exception("job %s attempt %s crashed", claim.job_id, claim.attempt)
        _retry_or_fail(task, claim, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}")


def _retry_or_fail(task: Task, claim: Claim, code: str, message: str) -> None:
    settings = get_settings()
    if claim.attempt >= settings.max_attempts:
        _fail(claim, code, f"{message} (after {claim.attempt} attempts)")
        return
    if not job_store.release(claim, message, settings.db_retry_s):
        return
    try:
        task.apply_async(args=[str(claim.job_id)], countdown=10 * claim.attempt, queue="gpu")
    except Exception as exc:  # left QUEUED with no enqueued_at: the reaper sends it after the grace
        log.warning("could not re-enqueue job %s, the reaper will: %s", claim.job_id, exc)
        return
    job_store.mark_enqueued(claim.job_id)


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
