"""``verity-demo VIDEO``: the whole flow on one machine, through the real HTTP API.

Runs the migrations, starts the API (gunicorn) and a worker (Celery, with beat for the reaper and the
webhook relay), creates a submitter key, submits the video with a webhook pointing at a local receiver,
shows progress, prints the verdict with per-model scores, and shows the signed webhook the receiver got.
With no service URLs set it is embedded (SQLite, Celery's filesystem transport, a local-folder store under
VERITY_HOME); with DATABASE_URL / BROKER_URL / S3_BUCKET set it uses those services instead.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, cast

import requests

from client.types import ResultJson
from core.settings import get_settings
from core.vocabulary import TERMINAL_STATUSES, Role
from db.apikeys import create_key
from db.session import session_scope
from tools.stack import Stack, api_service, describe_services, free_port, migrate, worker_service
from workers.webhooks import sign


class WebhookReceiver:
    """A local HTTP endpoint that records every request it gets."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append({"headers": {k.lower(): v for k, v in self.headers.items()}, "body": body})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/verity"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


def verify_webhook(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = sign(secret, headers["webhook-id"], int(headers["webhook-timestamp"]), body)
    return expected in headers.get("webhook-signature", "").split(" ")


def print_result(result: ResultJson) -> None:
    print()
    print(f"verdict: {result['verdict']}", end="")
    if result["score"] is not None:
        print(f"   score P(fake) = {result['score']:.4f}", end="")
    t = result["thresholds"]
    print(f"   [{result['method']}: REAL < {t['t_low']} <= UNCERTAIN <= {t['t_high']} < FAKE]")
    if result["test_pack"]:
        print("WARNING: this result comes from a TEST pack with random weights; it is not a detection.")
    print(f"model pack: {result['model_pack']}   calibration: {result['calibration_version'] or 'identity'}")
    print(f"frames sampled: {result['frames_sampled']}   faces scored: {result['faces_found']}")
    models = result["models"]
    if models:
        print(f"\n{'model':<22}{'frames':>7}{'aggregated':>12}{'calibrated':>12}{'weight':>8}  aggregator")
        for name, m in models.items():
            if error := m.get("error"):
                print(f"{name:<22}  failed: {error}")
                continue
            print(
                f"{name:<22}{m['frames']:>7}{m['aggregated'] or 0.0:>12.4f}{m['calibrated'] or 0.0:>12.4f}"
                f"{m['weight']:>8.2f}  {m['aggregator']}"
            )
    for track in result["tracks"]["tracks"]:
        print(f"track {track['track_id']}: {len(track['detections'])} faces, fused P(fake) {track['score']:.4f}")
    for o in result["overrides"]:
        print(f"override {o['kind']}: {o['before']:.4f} -> {o['after']:.4f} ({o['reason']})")
    print("timings (s): " + ", ".join(f"{k}={v}" for k, v in result["timings"].items()))


def run(video: Path, timeout_s: float) -> int:
    settings = get_settings()
    os.environ.setdefault("VERITY_WEBHOOK_ALLOW_PRIVATE", "1")  # the receiver is on loopback
    migrate()
    with session_scope() as session:
        key = create_key(session, "demo", "demo", Role.SUBMITTER).plaintext
    receiver = WebhookReceiver()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    logs = settings.home / "logs"
    print(f"Verity demo: {describe_services(settings)}; logs in {logs}")
    # One worker on both queues with beat inside, solo (no fork): the fastest start for a single job.
    services = [api_service(f"127.0.0.1:{port}"), worker_service("worker", "gpu,io", "--pool", "solo", beat=True)]
    stack = Stack(services, log_dir=logs)
    try:
        stack.wait_ready(base)
        auth = {"Authorization": f"Bearer {key}"}
        with video.open("rb") as fh:
            response = requests.post(
                f"{base}/v1/jobs",
                headers=auth,
                files={"file": (video.name, fh, "application/octet-stream")},
                data={"webhook_url": receiver.url},
                timeout=120,
            )
        if response.status_code != 202:
            print(f"submission refused: HTTP {response.status_code} {response.text}", file=sys.stderr)
            return 2
        job = response.json()
        print(f"submitted {video.name} as job {job['id']}")
        deadline = time.monotonic() + timeout_s
        shown = None
        while job["status"] not in TERMINAL_STATUSES:
            if time.monotonic() > deadline:
                print(f"timed out after {timeout_s:.0f} s; job is {job['status']}", file=sys.stderr)
                return 3
            time.sleep(0.5)
            job = requests.get(f"{base}/v1/jobs/{job['id']}", headers=auth, timeout=10).json()
            state = (job["status"], job["stage"], round(job["progress"] * 100))
            if state != shown:
                print(f"  {job['status']:<9} {job['stage']:<16} {state[2]:>3}%")
                shown = state
        if job["status"] != "SUCCEEDED":
            print(f"job {job['status']}: {json.dumps(job['error'])}")
        else:
            print_result(
                cast(ResultJson, requests.get(f"{base}/v1/jobs/{job['id']}/result", headers=auth, timeout=10).json())
            )
        hook_deadline = time.monotonic() + 30
        while not receiver.received and time.monotonic() < hook_deadline:
            time.sleep(0.2)
        if not receiver.received:
            print("\nno webhook arrived within 30 s", file=sys.stderr)
            return 4
        hook = receiver.received[0]
        ok = verify_webhook(settings.webhook_secret, hook["headers"], hook["body"])
        print(f"\nwebhook received at {receiver.url}")
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            print(f"  {name}: {hook['headers'][name]}")
        print(f"  signature verifies: {ok}")
        print("  body: " + json.dumps(json.loads(hook["body"]), indent=2).replace("\n", "\n  "))
        return 0 if ok and job["status"] == "SUCCEEDED" else 1
    finally:
        stack.stop()
        receiver.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verity-demo", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("video", type=Path, help="a video file to check")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the verdict")
    args = parser.parse_args(argv)
    if not args.video.is_file():
        parser.error(f"{args.video} is not a file")
    return run(args.video, args.timeout)


if __name__ == "__main__":
    raise SystemExit(main())
