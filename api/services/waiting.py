"""A bounded wait for a job to end (POST /v1/jobs with ``wait``): the job row polled at a short interval, never
past the deadline, so a request thread is held at most VERITY_MAX_WAIT_S."""

from __future__ import annotations

import time
from collections.abc import Callable

from core.vocabulary import TERMINAL_STATUSES
from db.models import Job

POLL_S = 0.2


def until_terminal(
    load: Callable[[], Job],
    timeout_s: float,
    *,
    poll_s: float = POLL_S,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Job:
    """The job as ``load`` reads it, once it is terminal or ``timeout_s`` has passed (whichever is first)."""
    deadline = clock() + timeout_s
    while True:
        job = load()
        left = deadline - clock()
        if job.status in TERMINAL_STATUSES or left <= 0:
            return job
        sleep(min(poll_s, left))
