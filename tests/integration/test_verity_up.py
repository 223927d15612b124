"""``./verity up`` (``python -m tools.stack``): the embedded stack comes up, takes a job, and Ctrl-C stops it cleanly.

The module is started directly with this environment's Python: the ``up`` case of ``./verity`` only adds
``uv sync``, which a test must not run while it shares the environment.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from client.api import VerityClient
from tests.conftest import shared_file
from tests.support.services import REPO, free_port, wait_until
from tests.support.videos import CLIP

# The embedded stack must ignore the test session's services, whatever fixture exported them.
_SERVICE_VARS = ("DATABASE_URL", "BROKER_URL")
_SERVICE_PREFIXES = ("VERITY_", "S3_", "AWS_")


@dataclass
class Up:
    proc: subprocess.Popen[str]
    base: str
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def output(self) -> str:
        return "".join(self.lines)


def _descendants(pid: int) -> set[int]:
    """Every live process below pid (gunicorn workers, Celery pool children), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    env = {k: v for k, v in os.environ.items() if k not in _SERVICE_VARS and not k.startswith(_SERVICE_PREFIXES)} | {
        "VERITY_HOME": str(tmp_path / "home")
    }
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tools.stack", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a process group of its own, as a terminal's foreground job has
    )
    stdout = proc.stdout
    assert stdout is not None
    running = Up(proc, f"http://127.0.0.1:{port}", env)
    reader = threading.Thread(target=lambda: running.lines.extend(iter(stdout.readline, "")), daemon=True)
    reader.start()
    try:
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        reader.join(timeout=5)


def test_up_serves_a_job_and_stops_cleanly_on_ctrl_c(up: Up) -> None:
    clip = shared_file(CLIP)
    wait_until(lambda: "Verity is up" in up.output or up.proc.poll() is not None, 180, "the stack's banner")
    assert up.proc.poll() is None, up.output[-4000:]
    for shown in (f"API {up.base}", f"review page {up.base}/review", "./verity verity-keys create --tenant"):
        assert shown in up.output
    for name in ("api", "gpu", "io", "beat"):
        assert any(line.startswith(f"{name:<4} | ") for line in up.lines), f"no prefixed lines from {name}"

    # The banner's way to make a key works against the running stack's database.
    created = subprocess.run(
        [sys.executable, "-m", "api.keys_cli", "create", "--tenant", "up", "--role", "submitter", "--name", "t"],
        cwd=REPO,
        env=up.env,
        capture_output=True,
        text=True,
        check=True,
    )
    with VerityClient(up.base, json.loads(created.stdout)["key"]) as verity:
        job = verity.submit(clip, max_frames=4)
        assert verity.wait(job["id"], poll_s=0.5, timeout_s=300)["status"] == "SUCCEEDED", up.output[-4000:]

    children = _descendants(up.proc.pid)
    assert len(children) >= 4  # gunicorn, two workers, beat, and their own children
    os.killpg(up.proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    assert up.proc.wait(timeout=90) == 0, up.output[-4000:]
    wait_until(lambda: "Verity: stopped" in up.output, 10, "the last lines")
    assert not [pid for pid in children if _alive(pid)], up.output[-4000:]
