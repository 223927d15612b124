"""Unit tier: pure code only (scoring maths, settings, vocabulary, typed results, track linking, the SSRF
guard, webhook signing, the key cache, the CLI's rendering, service functions over in-memory fakes). No torch,
no video decoding, no database, no network, no ../shared test material: `./verity test --fast` or
`pytest tests/unit`, well under a minute on 2 cores.

The hooks below keep it that way: a test module that imports torch, PyAV or OpenCV fails to collect, a test
that loads one of them or opens a network connection fails, and a run of this folder alone fails if any of
them was imported by the end of the session (a conftest or plugin included).
"""

from __future__ import annotations

import socket
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

HERE = Path(__file__).resolve().parent
# The model runtime and the video decoders: each costs seconds to import and belongs to tests/models or tests/media.
HEAVY_MODULES = ("torch", "av", "cv2")


def _loaded() -> set[str]:
    import sys

    return {name for name in HEAVY_MODULES if name in sys.modules}


def _ours(path: Path) -> bool:
    return Path(path).resolve().is_relative_to(HERE)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    before = _loaded()
    report = yield
    new = sorted(_loaded() - before)
    if new and isinstance(collector, pytest.Module) and _ours(collector.path) and report.passed:
        report.outcome = "failed"
        report.longrepr = f"{collector.path.name} imports {', '.join(new)}: move it to tests/models or tests/media"
    return report


@pytest.fixture(autouse=True)
def _pure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    def refuse(self: socket.socket, address: Any) -> NoReturn:
        raise AssertionError(f"the unit tier opens no connections ({address!r}): use a fake or move the test")

    # Every TCP client (psycopg, redis, boto3, requests) ends in socket.connect or connect_ex.
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    before = _loaded()
    yield
    new = sorted(_loaded() - before)
    assert not new, f"{request.node.nodeid} imported {', '.join(new)}: move it to tests/models or tests/media"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    items = getattr(session, "items", [])
    if not items or not all(_ours(item.path) for item in items):
        return  # a wider run: the other tiers load these on purpose
    if loaded := _loaded():
        print(f"\nthe unit tier imported {', '.join(sorted(loaded))}; it must stay free of them")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
