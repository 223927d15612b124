"""An S3 server (moto) that keeps its objects across a stop and a start, like a real store with a disk.

    python -m tests.support.s3_server --port 9000 --data /tmp/s3 --bucket verity

SIGTERM stops it listening, writes every object under ``--data`` and exits. Started again with the same
``--data``, it loads them back *before* it listens on ``--port``, so no client ever sees the store half
restored (a missing object is a permanent failure for a job, unlike a store that does not answer).
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path
from typing import Any

import boto3
from moto.server import ThreadedMotoServer


def _client(port: int) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def _load(s3: Any, data: Path) -> None:
    for bucket in sorted(p for p in data.iterdir() if p.is_dir()):
        s3.create_bucket(Bucket=bucket.name)
        for path in sorted(p for p in bucket.rglob("*") if p.is_file()):
            s3.put_object(Bucket=bucket.name, Key=path.relative_to(bucket).as_posix(), Body=path.read_bytes())


def _save(s3: Any, data: Path) -> None:
    for bucket in s3.list_buckets()["Buckets"]:
        folder = data / bucket["Name"]
        folder.mkdir(parents=True, exist_ok=True)
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket["Name"]):
            for entry in page.get("Contents", []):
                target = folder / entry["Key"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(s3.get_object(Bucket=bucket["Name"], Key=entry["Key"])["Body"].read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bucket", required=True, help="created if the data has no such bucket")
    args = parser.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    (args.data / args.bucket).mkdir(exist_ok=True)

    # moto keeps its state per process, shared by every server in it: the data goes in and out through a
    # second listener on a port no client knows, while the public one is not (or no longer) listening.
    private = ThreadedMotoServer("127.0.0.1", 0, verbose=False)
    private.start()
    s3 = _client(private.get_host_and_port()[1])
    _load(s3, args.data)
    public = ThreadedMotoServer("127.0.0.1", args.port, verbose=False)
    public.start()
    print(f"s3 server on 127.0.0.1:{args.port}", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    public.stop()
    _save(s3, args.data)
    private.stop()


if __name__ == "__main__":
    main()
