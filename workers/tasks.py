"""Celery tasks: detect (gpu queue), deliver_webhook / relay_webhooks / reap (io queue).

Outages delay a job, they don't fail it: Postgres is waited for in place, the object store by handing the job
back and sending it again after a growing delay, and neither uses up the job's attempts; only its own faults
(bad media, a crash) do. See README, Reliability.
"""

from __future__ import annotations

import logging
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import Task
from celery.exceptions import Reject, SoftTimeLimitExceeded

from core import payloads
from core.media.errors import MediaError
from core.queue import enqueue_webhook, soft_time_limit_s
from core.settings import Settings, get_settings
from core.storage import ObjectMissing, StorageError, get_store
from core.vocabulary import Stage, TaskName
from db import batches, finish, jobs, owner_lock, retry
from db.jobs import Claim
from workers import calibration_cache, reaper, webhooks
from workers.celery_app import app
from workers.fetch import SourceFailure, fetch_source

log = logging.getLogger(__name__)


# A redelivered message can arrive a moment before Postgres has noticed that the killed owner's connection is
# gone and dropped its liveness lock; wait this long for the lock before leaving the job to its owner.
TAKEOVER_WAIT_S = 3.0
# The first wait after a failed download; each later one is as long as the outage has lasted so far.
MIN_OUTAGE_BACKOFF_S = 1.0


@dataclass(frozen=True)
class Patience:
    """How long this task may wait in place for Postgres: the outage budget, but never past the soft time
    limit, which would turn the outage into a TIMEOUT of the job."""

    budget_s: float
    soft_deadline: float  # time.monotonic()

    @classmethod
    def for_task(cls, settings: Settings) -> Patience:
        deadline = time.monotonic() + soft_time_limit_s(settings.task_time_limit_s)
        return cls(settings.outage_retry_budget_s, deadline)

    def db_s(self) -> float:
        return max(0.0, min(self.budget_s, self.soft_deadline - time.monotonic()))


class FencedOff(Exception):
    """This attempt no longer owns the job (lease taken over or job cancelled)."""


class LeaseKeeper:
    """Renews the lease every ``heartbeat_interval_s`` from a background thread, whatever stage the job is in,
    and re-takes the liveness lock if a database restart dropped it; the pipeline's stage changes beat too.

    A transient database error only skips a beat: the lease outlasts several, and the final write is fenced.
    """

    def __init__(self, claim: Claim, lock: owner_lock.OwnerLock, settings: Settings) -> None:
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
            owned = jobs.heartbeat(self.claim, stage, fraction, self.settings.lease_s)
        except Exception as exc:
            if not retry.is_transient(exc):
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


def _send_webhooks(claim: Claim, delivery_id: Any) -> None:
    """The job's own event, then, for a batch item, the batch.completed its final write made if it ended the batch
    (looked up only for batch items: a lone job's finish costs no extra query)."""
    _send_webhook(delivery_id)
    if claim.batch_id is None:
        return
    try:
        completed = batches.completion_delivery(claim.job_id)
    except Exception as exc:  # the relay sends it from Postgres
        log.warning("could not look up the batch webhook of job %s: %s", claim.job_id, exc)
        return
    _send_webhook(completed)


def _fail(claim: Claim, code: str, message: str, patience: Patience) -> None:
    payload = payloads.failed(claim.job_id, code, message)
    outcome = finish.fail(claim, code, message, payload, patience.db_s())
    if outcome is False:  # finish.fail logged it
        return
    log.info("job %s failed: %s: %s", claim.job_id, code, message)
    _send_webhooks(claim, outcome)


def _process(claim: Claim, keeper: LeaseKeeper, patience: Patience) -> None:
    from workers.resources import get_resources  # torch-heavy; io workers never import it

    def progress(stage: str, fraction: float) -> None:
        keeper.beat(stage, fraction)
        if keeper.lost:
            raise FencedOff(f"attempt {claim.attempt} lost job {claim.job_id}")

    with tempfile.TemporaryDirectory(prefix="verity-job-") as tmp:
        path = Path(tmp) / "input"
        if claim.source_url and claim.sha256 is None:
            progress(Stage.FETCHING, 0.01)
            claim = _fetch(claim, path, patience)
        else:
            progress(Stage.DOWNLOADING, 0.01)
            get_store().download_to(claim.input_key, path)
        if claim.outage_since is not None:
            finish.outage_over(claim, patience.db_s())
        progress("loading_models", 0.03)
        resources = get_resources()
        config = resources.config
        config = replace(
            config,
            max_frames=int(claim.params.get("max_frames", config.max_frames)),
            sampling=str(claim.params.get("sampling", config.sampling)),
        )
        # torch-heavy; io workers never import them
        from workers.members import pack_fusion_spec
        from workers.pipeline import run_pipeline

        # One read of the active version, so its calibrators and its thresholds always go together.
        current = retry.with_retry(
            calibration_cache.active, patience.db_s(), f"reading the calibration for {claim.job_id}"
        )
        known = retry.with_retry(
            lambda: jobs.known_label(claim), patience.db_s(), f"reading moderator labels for {claim.job_id}"
        )
        output = run_pipeline(
            path,
            resources.faces,
            resources.pack,
            config,
            calibration=None if current is None else current.state,
            fusion=None if current is None else current.fusion_spec(pack_fusion_spec(resources.pack)),
            known_label=known,
            progress=progress,
        )
        if _explain_wanted(claim, get_settings()):
            from workers.explain.heatmaps import explain, heatmap_prefix  # torch-heavy, like the pipeline

            progress("explaining", 0.92)
            per_member = get_settings().explain_frames
            prefix = heatmap_prefix(str(claim.job_id))
            output = replace(output, result=explain(output, resources.pack, per_member, get_store(), prefix))
    progress("saving", 0.95)
    outcome = finish.complete(
        claim, output.result, output.frame_rows, payloads.succeeded(claim.job_id, output.result), patience.db_s()
    )
    if outcome is False:
        raise FencedOff(f"attempt {claim.attempt} lost job {claim.job_id} before saving")
    log.info("job %s: %s (score %s)", claim.job_id, output.result.verdict, output.result.score)
    _send_webhooks(claim, outcome)


def _explain_wanted(claim: Claim, settings: Settings) -> bool:
    """The job's own explain=true/false, else the deployment's VERITY_EXPLAIN_DEFAULT."""
    asked = claim.params.get("explain")
    return settings.explain_default if asked is None else bool(asked)


def _fetch(claim: Claim, path: Path, patience: Patience) -> Claim:
    """Fetch the job's source_url to ``path``, store it at its input_key and record what it is: the claim as it
    is now. A retried job fetches again until this has been recorded."""
    assert claim.source_url is not None
    admitted = fetch_source(claim.source_url, path, get_settings())
    with path.open("rb") as media:
        get_store().put_stream(claim.input_key, media, admitted.content_type)
    if not retry.with_retry(
        lambda: jobs.record_source(claim, admitted.sha256, admitted.size, admitted.content_type),
        patience.db_s(),
        f"recording the fetched source of {claim.job_id}",
    ):
        raise FencedOff(f"attempt {claim.attempt} lost job {claim.job_id} while fetching")
    log.info("job %s: fetched %d bytes from its source_url", claim.job_id, admitted.size)
    return replace(claim, sha256=admitted.sha256)


def _take(job_id: uuid.UUID, lock: owner_lock.OwnerLock, settings: Settings) -> jobs.Taken:
    """Lock first, then claim: a live owner always holds the lock, so getting it means any owner is gone."""
    deadline = time.monotonic() + TAKEOVER_WAIT_S
    while True:
        owner_gone = lock.acquire()
        taken = jobs.take(
            str(job_id),
            settings.lease_s,
            max_attempts=settings.max_attempts,
            owner_gone=owner_gone,
            # One backoff's worth, then the message goes back to the queue (below): a long wait here would eat
            # into the time limit of the task that then runs the job.
            retry_s=settings.outage_max_backoff_s,
        )
        if taken.reason != "owned" or owner_gone or not lock.enabled or time.monotonic() > deadline:
            return taken
        time.sleep(0.25)


@app.task(name=TaskName.DETECT, bind=True)
def detect(self: Task[Any, Any], job_id: str) -> None:
    settings = get_settings()
    patience = Patience.for_task(settings)
    try:
        jid = uuid.UUID(job_id)
    except ValueError:
        log.error("detect called with a malformed job id %r", job_id)
        return
    lock = owner_lock.OwnerLock(jid)
    try:
        try:
            taken = _take(jid, lock, settings)
        except Exception as exc:
            if not retry.is_transient(exc):
                raise
            # Acking now would leave the job QUEUED until the reaper's visibility-timeout resend; back in the
            # queue it is tried again, by a task with its whole time limit ahead. Unclaimed, it uses no attempt.
            log.warning("job %s: database unavailable, returning the message to the queue", job_id)
            raise Reject(str(exc)[:200], requeue=True) from exc
        if taken.claim is None:
            log.info("job %s is not claimable: %s", job_id, taken.reason)
            if taken.reason == "exhausted":  # failed with MAX_ATTEMPTS_EXCEEDED by this claim
                _send_webhook(taken.delivery_id)
                _send_webhook(taken.batch_delivery_id)
            return
        log.info("job %s claimed as attempt %s", job_id, taken.claim.attempt)
        with LeaseKeeper(taken.claim, lock, settings) as keeper:
            _run(self, taken.claim, keeper, settings, patience)
    finally:
        lock.release()  # after the final write: the job is never RUNNING with its lock free while we live


def _run(task: Task[Any, Any], claim: Claim, keeper: LeaseKeeper, settings: Settings, patience: Patience) -> None:
    try:
        _process(claim, keeper, patience)
    except FencedOff as exc:
        log.warning("%s", exc)
    except (MediaError, SourceFailure) as exc:
        # A source that cannot be fetched is the submitter's problem, like bad media: failed at once, not retried.
        _fail(claim, exc.code, exc.message, patience)
    except SoftTimeLimitExceeded:
        _fail(claim, "TIMEOUT", f"processing took longer than {settings.task_time_limit_s} s", patience)
    except ObjectMissing as exc:
        _fail(claim, "INPUT_MISSING", f"the uploaded video is gone from the object store: {exc}", patience)
    except StorageError as exc:
        _wait_for_storage(task, claim, settings, patience, exc)
    except Exception as exc:
        if retry.is_transient(exc):
            # Waited for in place as long as the budget and the time limit allowed. Nothing can be recorded
            # while the database is down; once it is back, the reaper sees a RUNNING job with a stale heartbeat
            # and a free lock and hands it back (that try counts as an attempt).
            log.error("job %s attempt %s: database unavailable, leaving it to the reaper", claim.job_id, claim.attempt)
            return
        log.exception("job %s attempt %s crashed", claim.job_id, claim.attempt)
        _retry_or_fail(task, claim, settings, "PROCESSING_ERROR", f"{type(exc).__name__}: {exc}", patience)


def _wait_for_storage(
    task: Task[Any, Any], claim: Claim, settings: Settings, patience: Patience, exc: StorageError
) -> None:
    """Hand the job back and send it again after a backoff, without using up an attempt, until the outage has
    lasted VERITY_OUTAGE_RETRY_BUDGET_S since the job first met it; then fail it STORAGE_UNAVAILABLE."""
    budget = settings.outage_retry_budget_s
    waited = 0.0 if claim.outage_since is None else (datetime.now(UTC) - claim.outage_since).total_seconds()
    if waited >= budget:
        message = (
            f"the object store was unreachable for {waited:.0f} s, longer than VERITY_OUTAGE_RETRY_BUDGET_S "
            f"({budget:g} s): {exc}"
        )
        _fail(claim, "STORAGE_UNAVAILABLE", message, patience)
        return
    # Waiting as long again as the outage has lasted doubles the total wait each time: exponential, capped.
    delay = min(max(MIN_OUTAGE_BACKOFF_S, waited), settings.outage_max_backoff_s, budget - waited)
    log.warning(
        "job %s: object store unavailable for %.0f s of a %g s budget; handing it back (retry %d, no attempt "
        "used) and trying again in %.1f s: %s",
        claim.job_id,
        waited,
        budget,
        claim.outage_retries + 1,
        delay,
        exc,
    )
    if finish.park(claim, Stage.WAITING_FOR_STORAGE, f"waiting for the object store: {exc}", patience.db_s()):
        _send_again(task, claim, delay)


def _retry_or_fail(
    task: Task[Any, Any], claim: Claim, settings: Settings, code: str, message: str, patience: Patience
) -> None:
    """A fault of the job's own: it uses up an attempt."""
    used = claim.attempts_used
    if used >= settings.max_attempts:
        _fail(claim, code, f"{message} (after {used} attempts)", patience)
        return
    if finish.release(claim, message, patience.db_s()):
        _send_again(task, claim, 10 * used)


def _send_again(task: Task[Any, Any], claim: Claim, countdown: float) -> None:
    try:
        task.apply_async(args=(str(claim.job_id),), countdown=countdown, queue="gpu")
    except Exception as exc:  # left QUEUED with no enqueued_at: the reaper sends it after the grace
        log.warning("could not re-enqueue job %s, the reaper will: %s", claim.job_id, exc)
        return
    jobs.mark_enqueued(claim.job_id)


@app.task(name=TaskName.DELIVER_WEBHOOK)
def deliver_webhook(delivery_id: str) -> str | None:
    return webhooks.deliver(delivery_id, get_settings())


@app.task(name=TaskName.RELAY_WEBHOOKS)
def relay_webhooks() -> int:
    """Retries are scheduled in Postgres (next_attempt_at), not as broker ETAs; this sends the due ones."""
    settings = get_settings()
    sent = 0
    for delivery_id in webhooks.due_deliveries():
        if webhooks.deliver(delivery_id, settings) is not None:
            sent += 1
    return sent


@app.task(name=TaskName.REAP)
def reap() -> dict[str, list[str]]:
    report = reaper.reap(get_settings())
    return {"enqueued": report.enqueued, "failed": report.failed}
