"""``verity submit FILE FILE ...``: several files as one batch, followed item by item (the rest of the CLI is in
client/cli.py)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from client.api import VerityClient
from client.output import EXIT_JOB_FAILED, EXIT_OK, EXIT_TIMEOUT, Output
from client.types import BatchJson


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def describe(batch: BatchJson) -> str:
    counts = ", ".join(f"{n} {status}" for status, n in batch["counts"].items() if n)
    lines = [f"batch {batch['id']}  {batch['status']}  ({counts})"]
    for item in batch["items"]:
        outcome = item["verdict"] or item["error"] or ""
        lines.append(
            f"  {item['job_id']}  {item['status']:<9} {outcome:<9} {_fmt(item['score'])}  {item['filename'] or ''}"
        )
    return "\n".join(lines)


def follow(
    client: VerityClient, batch: BatchJson, poll_s: float, timeout_s: float, note: Callable[[str], None]
) -> BatchJson:
    """Poll until the batch is COMPLETED or ``timeout_s`` passed, noting each item whose status changes."""
    deadline = time.monotonic() + timeout_s
    seen: dict[str, str] = {}
    while True:
        for item in batch["items"]:
            if seen.get(item["job_id"]) != item["status"]:
                seen[item["job_id"]] = item["status"]
                note(f"progress: {item['filename'] or item['job_id']}: {item['status']} {item['verdict'] or ''}")
        if batch["status"] == "COMPLETED" or time.monotonic() >= deadline:
            return batch
        time.sleep(min(poll_s, max(deadline - time.monotonic(), 0.0)))
        batch = client.batch(batch["id"])


def submit(client: VerityClient, args: argparse.Namespace, paths: list[Path], note: Callable[[str], None]) -> BatchJson:
    batch = client.submit_batch(
        paths,
        webhook_url=args.webhook_url,
        per_item_webhooks=bool(args.webhook_url),
        idempotency_key=args.idempotency_key,
        max_frames=args.frames,
    )
    if not args.wait:
        return batch
    note(f"submitted batch {batch['id']} ({batch['total']} files); waiting (Ctrl-C stops waiting, not the jobs)")
    return follow(client, batch, args.poll, args.wait_timeout, note)


def cmd_submit_batch(client: VerityClient, out: Output, args: argparse.Namespace, paths: list[Path]) -> int:
    """Submit the files as one batch (and with --wait follow it); the exit code is as for one job: 0 once every
    item SUCCEEDED (or, without --wait, once submitted), 5 if any FAILED or was CANCELLED, 6 on timeout."""
    batch = submit(client, args, paths, out.note)
    out.emit(batch, lambda: describe(batch))
    if not args.wait:
        return EXIT_OK
    if batch["status"] != "COMPLETED":
        return EXIT_TIMEOUT
    return EXIT_OK if batch["counts"].get("SUCCEEDED") == batch["total"] else EXIT_JOB_FAILED
