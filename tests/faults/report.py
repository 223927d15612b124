"""Run every fault-injection scenario (slow and fast) plus the webhook and SSRF tests, and print the table:
scenario, jobs, completed, lost, duplicated, pass/fail.

    python -m tests.faults.report            # everything, ~15 minutes on 2 CPU cores
    python -m tests.faults.report -k redis   # extra arguments go to pytest

Needs what the other tests need (Postgres on 127.0.0.1:5432, Redis, ../shared/testdata) plus redis-server and
the Postgres server binaries, which the scenarios start privately on random ports (never the shared ones).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent.parent
WEBHOOK_TESTS = ["tests/integration/test_webhooks_delivery.py", "tests/integration/test_webhooks_ssrf.py"]
# Webhook tests have no jobs to count; each group becomes one row of the table.
GROUPS: dict[str, Callable[[str], bool]] = {
    "9 webhook signatures (standardwebhooks)": lambda nodeid: "signature" in nodeid,
    "10 webhook retries (backoff, 2xx/3xx/timeout/410/Retry-After)": lambda nodeid: (
        "test_webhooks_delivery" in nodeid and "signature" not in nodeid
    ),
    "11 SSRF refused at creation and send time": lambda nodeid: "test_webhooks_ssrf" in nodeid,
}


class WebhookRows:
    def __init__(self) -> None:
        self.outcomes: dict[str, list[bool]] = {name: [] for name in GROUPS}

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.when == "call" or (report.when == "setup" and not report.passed):
            for name, member in GROUPS.items():
                if member(report.nodeid):
                    self.outcomes[name].append(report.passed)

    def pytest_sessionfinish(self) -> None:
        from tests.faults.conftest import ROWS, FaultRow

        for name, results in self.outcomes.items():
            if results:
                outcome = "pass" if all(results) else "FAIL"
                ROWS.append(FaultRow(name, outcome=outcome, note=f"{sum(results)}/{len(results)} tests passed"))


def main(argv: list[str]) -> int:
    os.environ["VERITY_SLOW_TESTS"] = "1"
    os.chdir(REPO)
    args = ["tests/faults", *WEBHOOK_TESTS, "-p", "no:cacheprovider", "-q", *argv]
    return int(pytest.main(args, plugins=[WebhookRows()]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
