"""A worker (and beat) refuses to start on an inconsistent reliability configuration: it exits non-zero with a
plain message instead of running with timeouts that would double or lose jobs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from core.env import SettingsError
from core.queue import check_celery_conf, make_celery, soft_time_limit_s
from core.settings import load_settings
from tests.conftest import REPO
from tests.faults.conftest import FaultRow, scenario
from tests.support.services import PrivateRedis, free_port, wait_until

BAD = [
    ({"VERITY_TASK_TIME_LIMIT_S": "900", "VERITY_LEASE_S": "900"}, "inconsistent timeouts"),
    ({"VERITY_LEASE_S": "1200", "VERITY_VISIBILITY_TIMEOUT_S": "1000"}, "inconsistent timeouts"),
    ({"VERITY_TASK_TIME_LIMIT_S": "2000"}, "inconsistent timeouts"),
    ({"VERITY_HEARTBEAT_INTERVAL_S": "600"}, "VERITY_HEARTBEAT_INTERVAL_S"),
    ({"VERITY_WEBHOOK_BACKOFF_S": "5,soon"}, "VERITY_WEBHOOK_BACKOFF_S"),
    ({"VERITY_LEASE_S": "twenty"}, "VERITY_LEASE_S must be an integer"),
    ({"VERITY_BROKER_STARTUP_TIMEOUT_S": "0"}, "VERITY_BROKER_STARTUP_TIMEOUT_S must be a positive number"),
    ({"VERITY_BROKER_STARTUP_TIMEOUT_S": "nan"}, "VERITY_BROKER_STARTUP_TIMEOUT_S must be a positive number"),
    ({"VERITY_ACCEPTED_CODECS": "h264,divx"}, "VERITY_ACCEPTED_CODECS: 'divx' is not a video decoder"),
]


def _run(tmp_path: Path, command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VERITY_")},
        "VERITY_HOME": str(tmp_path),
        "BROKER_URL": "redis://127.0.0.1:9/0",  # never reached: it must stop before connecting
        **env,
    }
    celery = str(Path(sys.executable).parent / "celery")
    return subprocess.run(
        [celery, "-A", "workers.celery_app", *command], cwd=REPO, env=full, capture_output=True, text=True, timeout=120
    )


@scenario("4 worker refuses inconsistent settings")
@pytest.mark.parametrize("command", [["worker", "-Q", "gpu"], ["beat"]], ids=["worker", "beat"])
def test_worker_process_exits_non_zero_with_a_clear_message(
    tmp_path: Path, command: list[str], fault_row: FaultRow
) -> None:
    for env, message in BAD:
        done = _run(tmp_path, command, env)
        assert done.returncode == 78, (env, done.returncode, done.stderr[-2000:])
        assert "verity worker: refusing to start: " in done.stderr and message in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
    fault_row.note = f"{len(BAD)} bad configurations, each exit 78 with the reason on stderr"


def test_visibility_timeout_must_reach_every_place_celery_reads_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("BROKER_URL", "redis://127.0.0.1:9/0")
    settings = load_settings()
    app = make_celery(settings)
    check_celery_conf(app, settings)  # the real configuration passes
    app.conf.result_backend_transport_options = {}
    with pytest.raises(SettingsError, match=r"result_backend_transport_options\.visibility_timeout is None"):
        check_celery_conf(app, settings)
    app = make_celery(settings)
    app.conf.broker_transport_options = {"visibility_timeout": settings.lease_s - 1}
    with pytest.raises(SettingsError, match=r"broker_transport_options\.visibility_timeout"):
        check_celery_conf(app, settings)
    app = make_celery(settings)
    app.conf.task_acks_late = False
    app.conf.worker_prefetch_multiplier = 4
    with pytest.raises(SettingsError, match=r"acks_late.*prefetch_multiplier is 4"):
        check_celery_conf(app, settings)


@pytest.mark.parametrize(("limit", "soft"), [(900, 870), (120, 108), (20, 18), (5, 4.5)])
def test_the_soft_time_limit_leaves_room_to_record_the_timeout(limit: int, soft: float) -> None:
    # It used to be max(1, limit - 30): a 20 s limit gave a 1 s soft limit that failed every job.
    assert soft_time_limit_s(limit) == pytest.approx(soft)


def test_gpu_worker_refuses_a_pack_whose_checkpoints_are_absent(tmp_path: Path) -> None:
    # The shipped seed pack names public files an operator must provide; until they are there, say which.
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "f3net_best.pth").write_bytes(b"present")
    env = {
        "VERITY_PACK": str(REPO / "models/packs/seed-deepfakebench.yaml"),
        "VERITY_WEIGHTS_DIR": str(tmp_path / "weights"),
    }
    done = _run(tmp_path, ["worker", "-Q", "gpu"], env)
    assert done.returncode == 78, done.stderr[-2000:]
    assert "misses 3 checkpoint file(s)" in done.stderr and "Traceback" not in done.stderr
    assert "xception_best.pth, effnb4_best.pth, effort_clip_L14_trainOn_FaceForensic.pth" in done.stderr


@scenario("4b worker exits when its broker is unreachable at start-up")
def test_worker_exits_69_with_one_line_when_its_broker_stays_unreachable(tmp_path: Path, fault_row: FaultRow) -> None:
    # Nothing listens on this loopback port: every connection is refused at once, so only the timeout decides.
    env = {"BROKER_URL": f"redis://127.0.0.1:{free_port()}/0", "VERITY_BROKER_STARTUP_TIMEOUT_S": "3"}
    started = time.monotonic()
    done = _run(tmp_path, ["worker", "-Q", "io", "-c", "1"], env)
    elapsed = time.monotonic() - started
    assert done.returncode == 69, (done.returncode, done.stderr[-2000:])
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("verity worker: refusing to start: broker redis://127.0.0.1:")
    assert "unreachable for 3 s" in lines[0] and "VERITY_BROKER_STARTUP_TIMEOUT_S" in lines[0]
    assert 3 <= elapsed < 30, elapsed  # it waited the timeout out, then gave up, instead of retrying on
    assert "ready." not in done.stdout  # no consumer, no pool: nothing heartbeat meanwhile
    fault_row.note = f"exit 69 after {elapsed:.0f} s (timeout 3 s), one line on stderr"


def test_worker_waits_for_a_broker_that_comes_up_within_the_timeout(tmp_path: Path) -> None:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    broker = PrivateRedis(tmp_path)  # its port is chosen, the server not started yet
    log = tmp_path / "worker.log"
    celery = str(Path(sys.executable).parent / "celery")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("VERITY_")},
        "VERITY_HOME": str(tmp_path),
        "BROKER_URL": broker.url,
        "VERITY_BROKER_STARTUP_TIMEOUT_S": "60",
    }
    worker = subprocess.Popen(
        [celery, "-A", "workers.celery_app", "worker", "-Q", "io", "-c", "1", "--loglevel", "INFO"],
        cwd=REPO,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        time.sleep(3)
        assert worker.poll() is None, log.read_text()[-2000:]
        broker.start()
        wait_until(lambda: "ready." in log.read_text() or worker.poll() is not None, 60, "the worker to start")
        assert worker.poll() is None, log.read_text()[-2000:]
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=30)
        broker.kill()
