"""The README stays true: its configuration table names exactly what the settings read, its layout table the
tree's folders, and every command, module and path it shows exists."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from client.cli import build_parser
from tools.stack import banner

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text(encoding="utf-8")
VERITY_SCRIPT = (REPO / "verity").read_text(encoding="utf-8")
# Top-level folders a README path may start with.
TOP = ("api", "client", "core", "db", "migrations", "models", "tests", "tools", "workers")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def _first_cells(section: str) -> list[str]:
    """The first cell of every body row of the tables in a section."""
    rows = [line for line in section.splitlines() if line.startswith("|")]
    return [
        row.split("|")[1] for row in rows if not set(row) <= set("|-: ") and row.split("|")[1].strip() != "variable"
    ]


class _RecordingEnviron(dict[str, str]):
    """An environment that remembers every name looked up in it."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


def test_the_configuration_table_names_what_the_settings_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from core.settings import load_settings

    # Derived from the code's behaviour, not its text: whatever load_settings looks up, however it builds the name.
    environ = _RecordingEnviron({"VERITY_HOME": str(tmp_path)})
    monkeypatch.setattr(os, "environ", environ)
    load_settings()
    documented = {
        name
        for cell in _first_cells(_section("Configuration (environment)"))
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", cell)
    }
    assert documented - environ.read == set(), "documented but not read by core/settings.py"
    assert environ.read - documented == set(), "read by core/settings.py but missing from the README's table"


def test_the_layout_table_lists_the_top_level_folders() -> None:
    listed = {m for cell in _first_cells(_section("Layout")) for m in re.findall(r"`(\w+)/`", cell)}
    tree = {p.name for p in REPO.iterdir() if p.is_dir() and (p / "__init__.py").exists()} | {"migrations"}
    assert listed == tree


def _verity_cases() -> set[str]:
    return {name for case in re.findall(r"^  ([a-z|\-]+)\)$", VERITY_SCRIPT, re.M) for name in case.split("|")}


def test_every_verity_command_exists() -> None:
    cases = _verity_cases()
    bin_dir = Path(sys.executable).parent
    client_commands = set(next(a for a in build_parser()._actions if a.dest == "command").choices or ())
    commands = re.findall(r"\./verity ([\w.\-]+)(?: ([\w.\-]+))?(?: ([\w.\-]+))?", README)
    assert len(commands) > 40  # the pattern still finds the README's commands
    for command, second, third in commands:
        if command in cases:
            continue
        if command == "python":
            assert second == "-m" and importlib.util.find_spec(third) is not None, f"./verity python {second} {third}"
        else:  # the script runs anything else inside the environment
            assert (bin_dir / command).exists(), f"./verity {command}: no such command in the environment"
        if command == "verity" and second[:1].isalpha():  # not an option, nor "..." in prose
            assert second in client_commands, f"./verity verity {second}: the client has no such command"


def test_modules_are_run_through_verity() -> None:
    bare = [m.start() for m in re.finditer(r"python -m ", README) if not README[: m.start()].endswith("./verity ")]
    assert not bare, [README[i : i + 40] for i in bare]


def test_every_path_named_exists() -> None:
    paths = set(re.findall(rf"`((?:{'|'.join(TOP)})/[\w/.*\-]*)`", README))
    assert paths
    missing = sorted(p for p in paths if not list(REPO.glob(p.rstrip("/"))))
    assert not missing


def test_verity_help_lists_every_command() -> None:
    shown = subprocess.run(["bash", str(REPO / "verity"), "help"], capture_output=True, text=True, check=True).stdout
    for command in _verity_cases() - {"help", "-h", "--help"}:
        assert f"./verity {command}" in shown


def test_the_up_banner_shown_is_the_one_printed() -> None:
    assert banner("http://127.0.0.1:8000").strip() in README
