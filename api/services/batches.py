"""Submitting a batch (several uploads, one job each, the same options) and reading it back.

The pieces are submit_job's (api/services/jobs.py): the webhook check, the media probe, the store, the job row and
the enqueue after commit. What a batch adds: every item is checked before any is stored, the batch row and all its
jobs are written in one transaction (so no item can finish before its siblings exist), and the Idempotency-Key
belongs to the batch.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import IO, Protocol

from api.services.errors import BadInput, Invalid, NotFound
from api.services.jobs import JobRequest, new_job, try_enqueue, vet_webhook
from api.services.repository import DuplicateJob, Repository
from core.batches import BatchSummary, summarize
from core.storage import ObjectStore
from db.apikeys import Principal
from db.models import Batch, Job, Result


class BatchRepository(Repository, Protocol):
    def get_batch(self, tenant: str, batch_id: uuid.UUID) -> Batch | None: ...
    def batch_by_idempotency_key(self, tenant: str, key: str) -> Batch | None: ...
    def add_batch(self, batch: Batch, jobs: list[Job]) -> None: ...
    def batch_items(self, batch_id: uuid.UUID) -> list[tuple[Job, Result | None]]: ...


BatchUnitOfWork = Callable[[], AbstractContextManager[BatchRepository]]


@dataclass(frozen=True)
class BatchRequest:
    """The uploads (each a JobRequest with the shared options, no webhook and no key of its own) and the
    batch's own fields."""

    items: list[JobRequest]
    webhook_url: str | None
    per_item_webhooks: bool
    idempotency_key: str | None

    def fingerprint(self) -> str:
        """What makes two batch submissions the same request: every item's fingerprint, in order, and the fields."""
        fields = {
            "items": [item.fingerprint() for item in self.items],
            "webhook_url": self.webhook_url,
            "per_item_webhooks": self.per_item_webhooks,
        }
        return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class SubmittedBatch:
    batch: Batch
    replayed: bool


@dataclass(frozen=True)
class BatchState:
    batch: Batch
    summary: BatchSummary
    items: list[tuple[Job, Result | None]]


def _replay(batch: Batch, fingerprint: str) -> SubmittedBatch:
    if batch.request_fingerprint != fingerprint:
        raise Invalid(
            "IDEMPOTENCY_KEY_REUSED",
            f"this Idempotency-Key was used for batch {batch.id} with different files or form fields; use a new key",
        )
    return SubmittedBatch(batch, replayed=True)


def _by_key(batches: BatchUnitOfWork, tenant: str, key: str) -> Batch | None:
    with batches() as repo:
        return repo.batch_by_idempotency_key(tenant, key)


def submit_batch(
    submitter: Principal,
    request: BatchRequest,
    *,
    batches: BatchUnitOfWork,
    store: ObjectStore,
    enqueue: Callable[[str], None],
    check_media: Callable[[IO[bytes]], None],
    default_max_frames: int,
    allow_private_webhooks: bool,
    max_items: int,
) -> SubmittedBatch:
    """Probe every item, store them, record the batch and its QUEUED jobs at once and enqueue them; or return the
    batch this Idempotency-Key made. The same order as submit_job: the replay, the webhook URL, the limits and the
    probes (nothing is stored if any item is refused), then the store."""
    if not request.items:
        raise BadInput("MISSING_FILE", "send each file as a multipart part named 'file'")
    fingerprint = request.fingerprint()
    key = request.idempotency_key
    if key and (existing := _by_key(batches, submitter.tenant, key)):
        return _replay(existing, fingerprint)
    if len(request.items) > max_items:
        raise Invalid("TOO_MANY_ITEMS", f"{len(request.items)} files; a batch takes at most {max_items}")
    webhook_url = vet_webhook(request.webhook_url, allow_private_webhooks)
    item_webhook = webhook_url if request.per_item_webhooks else None
    for item in request.items:
        if item.file is not None:  # always, from the route: a batch takes uploads only
            check_media(item.file)

    batch = Batch(
        id=uuid.uuid4(),
        tenant=submitter.tenant,
        api_key_id=submitter.id,
        item_count=len(request.items),
        webhook_url=webhook_url,
        per_item_webhooks=request.per_item_webhooks,
        idempotency_key=key,
        request_fingerprint=fingerprint,
    )
    jobs: list[Job] = []
    try:
        for item in request.items:
            job = new_job(submitter, replace(item, idempotency_key=None), store, item_webhook, default_max_frames)
            job.batch_id = batch.id
            jobs.append(job)
        with batches() as repo:
            repo.add_batch(batch, jobs)
    except DuplicateJob:
        # Lost an idempotency race: keep the winner's batch and objects, drop ours.
        _drop(store, jobs)
        winner = _by_key(batches, submitter.tenant, key) if key else None
        if winner is None:
            raise
        return _replay(winner, fingerprint)
    except Exception:
        _drop(store, jobs)
        raise
    for job in jobs:
        try_enqueue(job.id, batches, enqueue)
    return SubmittedBatch(batch, replayed=False)


def _drop(store: ObjectStore, jobs: list[Job]) -> None:
    for job in jobs:
        store.delete(job.input_key)


def batch_state(repo: BatchRepository, tenant: str, batch_id: uuid.UUID) -> BatchState:
    """The batch with its items and their results; another tenant's batch is indistinguishable from a missing one."""
    batch = repo.get_batch(tenant, batch_id)
    if batch is None:
        raise NotFound("NOT_FOUND", "no such batch")
    items = repo.batch_items(batch.id)
    counts: dict[str, int] = {}
    for job, _ in items:
        counts[job.status] = counts.get(job.status, 0) + 1
    return BatchState(batch, summarize(counts, batch.item_count), items)
