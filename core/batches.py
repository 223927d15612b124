"""A batch's status from its items' statuses: pure, shared by the API's view and the completion in the database."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from core.vocabulary import TERMINAL_STATUSES, BatchStatus, JobStatus

# A batch's items are uploads: never a live stream's STREAMING job.
ITEM_STATUSES = frozenset(JobStatus) - {JobStatus.STREAMING}


@dataclass(frozen=True)
class BatchSummary:
    status: BatchStatus
    counts: dict[str, int]  # every job status, zero-filled, so a client never meets a missing key
    total: int

    @property
    def done(self) -> bool:
        return self.status == BatchStatus.COMPLETED


def summarize(counts: Mapping[str, int], total: int) -> BatchSummary:
    """``counts``: items per job status; ``total``: the items the batch was created with. A batch is COMPLETED
    when that many are terminal, RUNNING once any item has left QUEUED, else QUEUED."""
    filled = {status.value: int(counts.get(status.value, 0)) for status in JobStatus if status in ITEM_STATUSES}
    terminal = sum(filled[status.value] for status in TERMINAL_STATUSES)
    if terminal >= total:
        status = BatchStatus.COMPLETED
    elif filled[JobStatus.QUEUED.value] == total:
        status = BatchStatus.QUEUED
    else:
        status = BatchStatus.RUNNING
    return BatchSummary(status, filled, total)
