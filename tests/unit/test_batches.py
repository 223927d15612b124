"""The pure parts of batches and waits: a batch's status from its items', and the bounded wait for a job."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from api.services.waiting import until_terminal
from core.batches import summarize
from core.vocabulary import BatchStatus


@pytest.mark.parametrize(
    ("counts", "status"),
    [
        ({"QUEUED": 3}, BatchStatus.QUEUED),
        ({"QUEUED": 2, "RUNNING": 1}, BatchStatus.RUNNING),
        ({"QUEUED": 2, "SUCCEEDED": 1}, BatchStatus.RUNNING),
        ({"SUCCEEDED": 1, "FAILED": 1, "CANCELLED": 1}, BatchStatus.COMPLETED),
    ],
)
def test_a_batch_is_completed_once_every_item_is_terminal(counts: dict[str, int], status: BatchStatus) -> None:
    summary = summarize(counts, total=3)
    assert summary.status == status and summary.done == (status == BatchStatus.COMPLETED)
    assert set(summary.counts) == {"QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"}
    assert sum(summary.counts.values()) == 3


def test_an_item_not_yet_counted_keeps_the_batch_open() -> None:
    """Counts short of the batch's size (an item row not visible) never complete it."""
    assert summarize({"SUCCEEDED": 2}, total=3).status == BatchStatus.RUNNING


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _loader(statuses: list[str]) -> Any:
    def load() -> Any:
        return SimpleNamespace(status=statuses.pop(0) if len(statuses) > 1 else statuses[0])

    return load


def test_the_wait_returns_as_soon_as_the_job_ends() -> None:
    clock = FakeClock()
    job = until_terminal(_loader(["QUEUED", "RUNNING", "SUCCEEDED"]), 10, poll_s=0.2, clock=clock, sleep=clock.sleep)
    assert job.status == "SUCCEEDED" and clock.sleeps == [0.2, 0.2]


def test_the_wait_never_passes_its_cap() -> None:
    clock = FakeClock()
    job = until_terminal(_loader(["RUNNING"]), 0.5, poll_s=0.2, clock=clock, sleep=clock.sleep)
    assert job.status == "RUNNING"
    assert clock.now == pytest.approx(0.5) and max(clock.sleeps) <= 0.2
