"""``verity``: submit videos and images to a Verity API, follow them, read verdicts, label them, manage keys."""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from client import batch_cli, heatmap_cli, simulate_cli, source_cli, stream_cli
from client.api import (
    DEFAULT_URL,
    AuthError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    VerityClient,
    VerityError,
    WaitTimeout,
)
from client.output import (
    EXIT_AUTH,
    EXIT_JOB_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_SERVER,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    Output,
)
from client.types import JobJson, Json, ResultJson

KEYS_MODULE = "api.keys_cli"  # the `verity-keys` entry point
EPILOG = """\
configuration:
  --url or VERITY_URL (default http://127.0.0.1:8000), --api-key or VERITY_API_KEY.
  `verity keys` talks to the database directly (DATABASE_URL), not to the API.

exit codes:
  0  success (for `submit --wait` and `result`: the job SUCCEEDED)
  2  usage error: bad arguments, or the server refused the request as invalid (400, 409, 413, 415, 422)
  3  authentication/authorisation error (no key, 401, 403)
  4  not found (no such job, delivery or key)
  5  the job FAILED or was CANCELLED
  6  timed out waiting for the job (--wait-timeout)
  7  server or network error (5xx, 429, connection refused)

examples:
  verity submit clip.mp4 --wait --frames 16 ; verity submit a.jpg b.mp4 c.gif --wait  (a batch)
  verity submit clip.mp4 --webhook-url https://example.com/hooks/verity --json
  verity status 3f0c... ; verity result 3f0c... --json
  verity feedback 3f0c... --label FAKE --category FALSE_NEGATIVE --note "face swap"
  verity webhooks 3f0c... --redeliver msg_9a1b... ; verity heatmaps 3f0c... --out heatmaps/
  verity simulate --png simulation.png  (admin key: Option A vs B vs the whole file on labelled jobs)
  verity keys create --tenant acme --role submitter --name ci
"""


def _percent(job: JobJson) -> str:
    return f"{round(100 * float(job.get('progress') or 0.0)):3d}%"


def progress_line(job: JobJson) -> str:
    return f"{job['id']}  {job['status']:<9} {job['stage']:<16} {_percent(job)}"


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def describe_job(job: JobJson) -> str:
    lines = [progress_line(job)]
    if job.get("filename"):
        lines.append(f"file      {job['filename']} ({job.get('size_bytes')} bytes)")
    if error := job.get("error"):
        lines.append(f"error     {error['code']}: {error['message']}")
    lines.append(f"created   {job.get('created_at')}   finished {job.get('finished_at') or '-'}")
    return "\n".join(lines)


def describe_result(result: ResultJson) -> str:
    thresholds = result["thresholds"]
    lines = [
        f"verdict   {result['verdict']}",
        f"score     {_fmt(result['score'])}   (REAL below {_fmt(thresholds['t_low'])}, "
        f"FAKE from {_fmt(thresholds['t_high'])}; {result['method']})",
        f"faces     {result['faces_found']} in {result['frames_sampled']} sampled frames, "
        f"{len(result['tracks']['tracks'])} track(s)",
    ]
    preprocessing = result["preprocessing"]
    for name, model in result["models"].items():
        detail = model.get("error") or (
            f"calibrated {_fmt(model['calibrated'])}  raw {_fmt(model['aggregated'])}  "
            f"weight {_fmt(model['weight'], 2)}"
        )
        if fed := preprocessing.get(name):
            detail += f"  ({fed['crop']} {fed['input_size']} px, {fed['normalisation']})"
        lines.append(f"  {name:<24} {detail}")
    for override in result["overrides"]:
        lines.append(f"override  {override}")
    pack = result["model_pack"]
    lines.append(f"pack      {pack}" + ("  (TEST PACK: not a real verdict)" if result["test_pack"] else ""))
    return "\n".join(lines)


def describe_jobs(jobs: list[JobJson]) -> str:
    if not jobs:
        return "no jobs"
    return "\n".join(f"{progress_line(j)}  {j.get('created_at')}  {j.get('filename') or ''}" for j in jobs)


def describe_deliveries(deliveries: list[Json]) -> str:
    if not deliveries:
        return "no webhook deliveries (the job has no webhook_url, or has not finished)"
    return "\n".join(
        f"{d['webhook_id']}  {d['event']:<14} {d['state']:<9} attempts {d['attempts']}  "
        f"last {d.get('last_status') or '-'} {d.get('last_error') or ''}".rstrip()
        for d in deliveries
    )


def _finished(out: Output, job: JobJson, result: ResultJson | None) -> int:
    """Print a terminal job (and its result) and map its status to the exit code."""
    document = {"job": job, "result": result}
    out.emit(document, lambda: describe_job(job) + ("\n" + describe_result(result) if result else ""))
    return EXIT_OK if job["status"] == "SUCCEEDED" else EXIT_JOB_FAILED


def _wait(client: VerityClient, out: Output, args: argparse.Namespace, job_id: str) -> int:
    def show(job: JobJson) -> None:
        out.note(f"progress: {job['status']} {job['stage']} {_percent(job).strip()}")

    job = client.wait(job_id, poll_s=args.poll, timeout_s=args.wait_timeout, on_progress=show)
    result = client.result(job_id) if job["status"] == "SUCCEEDED" else None
    return _finished(out, job, result)


def cmd_submit(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.video]
    if problem := source_cli.usage_problem(args, paths):
        out.note(problem)
        raise SystemExit(EXIT_USAGE)  # as argparse does for its own usage errors
    if missing := [p for p in paths if not p.is_file()]:
        out.note(f"verity: {missing[0]} is not a readable file")
        return EXIT_USAGE
    if len(paths) > 1:  # a batch: one job per file, one batch.completed webhook
        return batch_cli.cmd_submit_batch(client, out, args, paths)
    job = source_cli.submit_one(client, out, args, paths[0] if paths else None)
    if args.wait_seconds is not None and job["status"] in ("SUCCEEDED", "FAILED", "CANCELLED"):  # it ended in time
        return _finished(out, job, job.get("result"))
    if not args.wait:
        out.emit(job, lambda: f"submitted {job['id']} ({job['status']}); follow it with `verity status {job['id']}`")
        return EXIT_OK
    out.note(f"submitted {job['id']}; waiting (Ctrl-C stops waiting, not the job)")
    return _wait(client, out, args, job["id"])


def cmd_status(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    if args.wait:
        return _wait(client, out, args, args.job_id)
    job = client.job(args.job_id)
    out.emit(job, lambda: describe_job(job))
    return EXIT_JOB_FAILED if job["status"] in ("FAILED", "CANCELLED") else EXIT_OK


def cmd_result(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    try:
        result = client.result(args.job_id)
    except ConflictError:
        # The server answers 409 for both "not finished yet" and "finished without a result".
        job = client.job(args.job_id)
        if job["status"] in ("FAILED", "CANCELLED"):
            return _finished(out, job, None)
        raise
    out.emit(result, lambda: describe_result(result))
    return EXIT_OK


def cmd_cancel(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    job = client.cancel(args.job_id)
    out.emit(job, lambda: describe_job(job))
    return EXIT_OK


def cmd_feedback(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    feedback = client.feedback(args.job_id, args.label, category=args.category, note=args.note)
    out.emit(feedback, lambda: f"recorded {feedback['label']} ({feedback['category']}) for {feedback['job_id']}")
    return EXIT_OK


def cmd_jobs(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    jobs = list(itertools.islice(client.jobs(status=args.status, limit=min(args.limit, 100)), args.limit))
    out.emit({"jobs": jobs}, lambda: describe_jobs(jobs))
    return EXIT_OK


def cmd_webhooks(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    if args.redeliver:
        delivery = client.redeliver(args.job_id, args.redeliver)
        out.emit(delivery, lambda: f"redelivering {delivery['webhook_id']} ({delivery['event']})")
        return EXIT_OK
    deliveries = client.deliveries(args.job_id)
    out.emit({"deliveries": deliveries}, lambda: describe_deliveries(deliveries))
    return EXIT_OK


def cmd_keys(out: Output, args: argparse.Namespace) -> int:
    # The one command that needs the database: the server's `verity-keys` tool, run as a child process so the
    # client imports nothing of the server and stays HTTP-only.
    if importlib.util.find_spec("api") is None:
        out.note("verity keys: needs the Verity server environment (./verity verity keys ...)")
        return EXIT_USAGE
    done = subprocess.run([sys.executable, "-m", KEYS_MODULE, *args.keys_args], capture_output=True, text=True)
    out.out.write(done.stdout)
    out.err.write(done.stderr)
    if done.returncode in (0, 2):  # 2: argparse refused the arguments
        return EXIT_USAGE if done.returncode else EXIT_OK
    # keys_cli's only failure return is "no key with that prefix"; anything else is a crash (a traceback).
    return EXIT_NOT_FOUND if done.stderr.startswith("no key") else EXIT_SERVER


def _positive_int(raw: str) -> int:
    value = int(raw)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _json_object(raw: str) -> Json:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _add_connection(parser: argparse.ArgumentParser, suppress: bool) -> None:
    """The same options at the top level and after a subcommand; in the subcommand they default to
    SUPPRESS so that an option given before the subcommand is not overwritten by the subparser's default."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument("--url", default=default(None), help="API base URL (env VERITY_URL)")
    parser.add_argument("--api-key", default=default(None), help="API key (env VERITY_API_KEY)")
    parser.add_argument("--timeout", type=float, default=default(30.0), help="seconds per HTTP request (30)")
    parser.add_argument("--json", action="store_true", default=default(False), help="JSON only on stdout")


def _add_wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between status polls (1)")
    parser.add_argument(
        "--wait-timeout", type=float, default=900.0, help="give up waiting after this many seconds (900; exit 6)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="verity", description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    _add_connection(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _add_connection(common, suppress=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    submit = sub.add_parser("submit", parents=[common], help="upload a video or image, or several as a batch")
    submit.add_argument(
        "video",
        nargs="*",
        help="a video (MP4/MOV, WebM/MKV, AVI, animated GIF/PNG/WebP) or image (JPEG, PNG, WebP, AVIF), judged by "
        "its content; several make a batch (one job each)",
    )
    submit.add_argument(
        "--source-url", help="instead of a file: an http(s) URL serving the video, fetched by the server"
    )
    submit.add_argument(
        "--presigned", action="store_true", help="send the file through a presigned upload (automatic above 64 MiB)"
    )
    submit.add_argument("--wait-seconds", type=float, help="server-side wait for a small file's verdict (capped)")
    submit.add_argument("--wait", action="store_true", help="wait for the verdict, showing progress on stderr")
    submit.add_argument("--webhook-url", help="where to POST the signed job.succeeded / job.failed event")
    submit.add_argument("--frames", type=_positive_int, help="frames to sample (server default 32)")
    submit.add_argument("--idempotency-key", help="a retry with the same key returns the same job")
    submit.add_argument("--metadata", type=_json_object, help="a JSON object stored with the job")
    submit.add_argument(
        "--explain", action="store_true", help="also make heatmaps of the decisive face crops (`verity heatmaps`)"
    )
    _add_wait(submit)

    status = sub.add_parser("status", parents=[common], help="a job's status, stage and progress")
    status.add_argument("job_id")
    status.add_argument("--wait", action="store_true", help="wait until it finishes, then print the verdict")
    _add_wait(status)

    result = sub.add_parser("result", parents=[common], help="a finished job's verdict and detail")
    result.add_argument("job_id")

    cancel = sub.add_parser("cancel", parents=[common], help="cancel a queued or running job")
    cancel.add_argument("job_id")

    feedback = sub.add_parser("feedback", parents=[common], help="label a finished job (moderator key)")
    feedback.add_argument("job_id")
    feedback.add_argument("--label", required=True, type=str.upper, choices=["REAL", "FAKE", "UNKNOWN"])
    feedback.add_argument(
        "--category", type=str.upper, choices=["FALSE_POSITIVE", "FALSE_NEGATIVE", "CONFIRMATION", "OTHER"]
    )
    feedback.add_argument("--note")

    jobs = sub.add_parser("jobs", parents=[common], help="your tenant's jobs, newest first")
    jobs.add_argument("--status", type=str.upper, choices=["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLED"])
    jobs.add_argument("--limit", type=_positive_int, default=20, help="at most this many (20)")

    webhooks = sub.add_parser("webhooks", parents=[common], help="a job's webhook deliveries; redeliver one")
    webhooks.add_argument("job_id")
    webhooks.add_argument("--redeliver", metavar="DELIVERY_ID", help="delivery id or its msg_… webhook-id")

    keys = sub.add_parser(
        "keys",
        help="create | list | revoke API keys (direct database access; see `verity keys -h`)",
        add_help=False,
        prefix_chars="\0",  # hand every argument, -h included, to the keys tool itself
    )
    keys.add_argument("keys_args", nargs=argparse.REMAINDER)
    heatmap_cli.add_parser(sub, common)
    simulate_cli.add_parser(sub, common)
    stream_cli.add_parser(sub, common)
    return parser


COMMANDS: dict[str, Callable[[VerityClient, Output, argparse.Namespace], int]] = {
    "submit": cmd_submit,
    "status": cmd_status,
    "result": cmd_result,
    "cancel": cmd_cancel,
    "feedback": cmd_feedback,
    "jobs": cmd_jobs,
    "webhooks": cmd_webhooks,
    "heatmaps": heatmap_cli.cmd_heatmaps,
    "simulate": simulate_cli.cmd_simulate,
    "stream": stream_cli.cmd_stream,
}


def exit_code_for(exc: VerityError) -> int:
    if isinstance(exc, AuthError):
        return EXIT_AUTH
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, WaitTimeout):
        return EXIT_TIMEOUT
    if isinstance(exc, ConflictError) and exc.code == "JOB_FAILED":
        return EXIT_JOB_FAILED
    if isinstance(exc, InvalidRequestError | ConflictError):
        return EXIT_USAGE
    return EXIT_SERVER


def _hint(exc: VerityError, args: argparse.Namespace) -> str:
    if isinstance(exc, AuthError) and exc.status == 401:
        return " (check --api-key / VERITY_API_KEY)"
    if isinstance(exc, AuthError):
        return " (this key's role may not do that)"
    if exc.status is None and not isinstance(exc, WaitTimeout):
        return f" (is the API running at {args.url}?)"
    return ""


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(getattr(args, "json", False))
    if args.command == "keys":
        return cmd_keys(out, args)
    args.url = args.url or os.environ.get("VERITY_URL") or DEFAULT_URL
    api_key = args.api_key or os.environ.get("VERITY_API_KEY")
    if not api_key:
        out.note("verity: no API key; pass --api-key or set VERITY_API_KEY (create one with `verity keys create`)")
        return EXIT_AUTH
    with VerityClient(args.url, api_key, timeout=args.timeout) as client:
        try:
            return COMMANDS[args.command](client, out, args)
        except VerityError as exc:
            out.note(f"verity {args.command}: {exc}{_hint(exc, args)}")
            return exit_code_for(exc)
        except KeyboardInterrupt:
            out.note("verity: interrupted")
            return 130


if __name__ == "__main__":
    raise SystemExit(main())
