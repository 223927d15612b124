"""The layout rules the README states that no linter checks: runtime modules stay small."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RUNTIME_PACKAGES = ("api", "client", "core", "db", "migrations", "models", "workers")
MAX_LINES = 400


def test_no_runtime_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for package in RUNTIME_PACKAGES
        for path in (REPO / package).rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"split these along their jobs (tests/ and tools/ are exempt): {long}"
