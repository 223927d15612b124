"""Fixtures for the fault-injection tests and the summary table they print.

Each scenario records a row (scenario, jobs, completed, lost, duplicated, pass/fail); the rows are printed at
the end of the run by ``pytest_terminal_summary``. ``python -m tests.faults.report`` runs them all.
"""

from __future__ import annotations

import os
import shutil
import string
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import PG_ADMIN_URL, Services
from tests.support.services import PrivatePostgres, PrivateRedis, PrivateS3, make_key, scratch_database
from tests.support.stack import Stack


@dataclass
class FaultRow:
    scenario: str
    jobs: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0
    outcome: str = "not run"
    note: str = ""


ROWS: list[FaultRow] = []


@pytest.fixture
def fault_row(request: pytest.FixtureRequest) -> Iterator[FaultRow]:
    name = getattr(request.node.function, "scenario", request.node.name)
    callspec = getattr(request.node, "callspec", None)
    row = FaultRow(f"{name} [{callspec.id}]" if callspec else name)
    yield row
    report = getattr(request.node, "rep_call", None)
    row.outcome = "pass" if report is not None and report.passed else "FAIL"
    ROWS.append(row)


def scenario(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The name a test's row gets in the table."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        fn.scenario = name  # type: ignore[attr-defined]
        return fn

    return mark


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if report.when == "call":
        item.rep_call = report  # type: ignore[attr-defined]
    return report


def _slow_wanted(config: pytest.Config) -> bool:
    return os.environ.get("VERITY_SLOW_TESTS") == "1" or "slow" in (config.getoption("markexpr", "") or "")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The slow fault-injection scenarios (minutes, real process kills) run only when asked for:
    ``python -m tests.faults.report``, ``pytest -m slow`` or VERITY_SLOW_TESTS=1. The fast ones always run."""
    if _slow_wanted(config):
        return
    skip = pytest.mark.skip(reason="slow fault injection: run `python -m tests.faults.report` or `pytest -m slow`")
    for item in items:
        if item.get_closest_marker("slow") and Path(str(item.path)).is_relative_to(Path(__file__).parent):
            item.add_marker(skip)


def format_table(rows: list[FaultRow]) -> str:
    header = ("scenario", "jobs", "completed", "lost", "duplicated", "result")
    body = [(r.scenario, str(r.jobs), str(r.completed), str(r.lost), str(r.duplicated), r.outcome) for r in rows]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in [header, *body]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    notes = [f"  {r.scenario}: {r.note}" for r in rows if r.note]
    return "\n".join(lines + (["", "notes:", *notes] if notes else []))


def _order(row: FaultRow) -> tuple[int, str]:
    number = row.scenario.split(" ", 1)[0].rstrip(string.ascii_lowercase)
    return (int(number) if number.isdigit() else 99, row.scenario)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if ROWS:
        terminalreporter.section("fault injection")
        terminalreporter.write_line(format_table(sorted(ROWS, key=_order)))


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    try:
        pg = PrivatePostgres()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"cannot run a private Postgres: {exc}")
    pg.start()
    try:
        yield pg
    finally:
        pg.destroy()


@pytest.fixture
def private_s3(tmp_path: Path) -> Iterator[PrivateS3]:
    s3 = PrivateS3(tmp_path)
    s3.start()
    try:
        yield s3
    finally:
        s3.stop()


StackFactory = Callable[..., Stack]


@pytest.fixture
def make_stack(
    services: Services, private_redis: PrivateRedis, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[StackFactory]:
    """Builds a stack (API started, no workers yet) on a fresh database of the shared Postgres, or of
    ``admin_url``'s server (a private one a test restarts), always on a private Redis."""
    stacks: list[Stack] = []
    databases: list[Any] = []

    def build(admin_url: str = PG_ADMIN_URL, **env: str) -> Stack:
        db = scratch_database(admin_url)
        url = db.__enter__()
        databases.append(db)
        logs = tmp_path / f"stack{len(stacks)}"
        logs.mkdir()
        stack = Stack({**services.env, **env}, url, private_redis, logs)
        stacks.append(stack)
        stack.key = make_key(url)
        stack.start_api()
        return stack

    try:
        yield build
    finally:
        for stack in stacks:
            stack.stop_all()
            failed = getattr(request.node, "rep_call", None)
            if failed is not None and not failed.passed:
                for log in sorted(stack.logs.glob("*.log")):
                    print(f"==== {log.name} (tail) ====\n{log.read_text(errors='replace')[-6000:]}")
        for db in databases:
            try:
                db.__exit__(None, None, None)
            except Exception as exc:  # the private server may already be gone
                print(f"could not drop a fault database: {exc}")
