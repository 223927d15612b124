"""``verity submit`` for one job: a file sent with the request, a large file through a presigned upload (with
progress on stderr), or a URL the server fetches."""

from __future__ import annotations

import argparse
from pathlib import Path

from client.api import VerityClient
from client.output import Output
from client.types import JobWithResultJson
from client.uploads import Progress

# Above this a file goes through a presigned upload even without --presigned: one long request to the API would
# hold an API worker for the whole transfer, where S3 takes the bytes directly.
PRESIGNED_ABOVE_BYTES = 64 * 1024 * 1024


def usage_problem(args: argparse.Namespace, paths: list[Path]) -> str | None:
    if args.source_url and paths:
        return "verity: give either files or --source-url, not both"
    if not args.source_url and not paths:
        return "verity: give a file to submit, or --source-url URL"
    if args.explain and (args.source_url or args.presigned or len(paths) > 1):
        return "verity: --explain works for one file sent with the request (not --source-url, --presigned or a batch)"
    return None


def _progress(out: Output) -> Progress:
    shown = [-1]

    def show(sent: int, total: int) -> None:
        percent = 100 * sent // max(total, 1)
        if percent != shown[0]:
            shown[0] = percent
            end = "\n" if sent >= total else ""
            print(f"\ruploading {percent}% ({sent / 2**20:.1f} of {total / 2**20:.1f} MiB)", end=end, file=out.err)

    return show


def submit_one(client: VerityClient, out: Output, args: argparse.Namespace, path: Path | None) -> JobWithResultJson:
    options = {
        "webhook_url": args.webhook_url,
        "max_frames": args.frames,
        "metadata": args.metadata,
        "wait_s": args.wait_seconds,
    }
    if path is None:
        return client.submit_url(args.source_url, args.idempotency_key, **options)
    if args.presigned or path.stat().st_size > PRESIGNED_ABOVE_BYTES:
        return client.submit_presigned(path, _progress(out), args.idempotency_key, **options)
    return client.submit(
        path,
        args.webhook_url,
        args.idempotency_key,
        args.frames,
        args.metadata,
        wait_s=args.wait_seconds,
        explain=args.explain or None,
    )
