"""``verity stream FILE_OR_DEVICE --fps 2``: a video file (or a camera, /dev/videoN) replayed as a live stream at
real time over the WebSocket (``--http``: POSTed frames and Server-Sent Events); each decision change is printed
as it comes, then the final decision and the job it was stored as (the rest of the CLI is in client/cli.py)."""

from __future__ import annotations

import argparse
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

from client.api import VerityClient
from client.output import EXIT_OK, Output
from client.simulate_cli import parse_strategy
from client.streams import LiveStream, StreamDecisionJson, open_stream

CLOSE_TIMEOUT_S = 60.0
JPEG_QUALITY = 85


def video_frames(source: str, fps: float, limit: int | None = None) -> Iterator[tuple[float, bytes]]:
    """(seconds from the start, JPEG) of a video at ``fps``: the first decoded frame at or after each tick."""
    import av
    from PIL import Image

    camera = "v4l2" if source.startswith("/dev/video") else None
    with av.open(source, mode="r", format=camera) as container:
        stream = container.streams.video[0]
        due, sent, start = 0.0, 0, None
        for frame in container.decode(stream):
            when = float(frame.time) if frame.time is not None else sent / fps
            start = when if start is None else start
            t = when - start
            if t + 1e-6 < due:
                continue
            buffer = io.BytesIO()
            Image.fromarray(frame.to_ndarray(format="rgb24")).save(buffer, "JPEG", quality=JPEG_QUALITY)
            yield round(t, 3), buffer.getvalue()
            sent += 1
            due += 1.0 / fps
            if limit is not None and sent >= limit:
                return


def describe(event: StreamDecisionJson) -> str:
    score = "—" if event.get("score") is None else f"{event['score']:.6f}"
    verdict = event.get("verdict") or "no decision yet"
    when = "" if event.get("t") is None else f"t={event['t']:.1f}s  "
    return f"{when}{verdict:<10} score {score}  (frames {event['frames_seen']}, dropped {event['frames_dropped']})"


def _follow(events: Iterator[StreamDecisionJson], out: Output, final: list[StreamDecisionJson]) -> None:
    for event in events:
        if event.get("type") == "closed":
            final.append(event)
            return
        if event.get("type") == "error":
            out.note(f"refused: {event}")
        elif event.get("changed"):
            out.note(describe(event))


def _send(stream: LiveStream, args: argparse.Namespace, over_http: bool) -> None:
    started = time.monotonic()
    for t, image in video_frames(args.source, args.fps, args.max_frames):
        if not args.fast:  # real time: a camera's pace, and under the server's per-second frame limit
            time.sleep(max(0.0, started + t - time.monotonic()))
        if over_http:
            stream.post_frames([(t, image)])
        else:
            stream.send(image, t)


def cmd_stream(client: VerityClient, out: Output, args: argparse.Namespace) -> int:
    strategy = {k: v for k, v in parse_strategy(args.strategy).items() if k != "name"}
    stream = open_stream(client, strategy, "changes", args.webhook_url)
    out.note(f"stream {stream.id} open ({strategy['kind']}); sending {args.source} at {args.fps:g} fps")
    final: list[StreamDecisionJson] = []
    if args.http:
        follower = threading.Thread(target=_follow, args=(stream.events(CLOSE_TIMEOUT_S), out, final), daemon=True)
        follower.start()
        _send(stream, args, over_http=True)
        view = stream.close()
        follower.join(timeout=CLOSE_TIMEOUT_S)
    else:
        with stream.connect():
            follower = threading.Thread(target=_follow, args=(stream.decisions(None), out, final), daemon=True)
            follower.start()
            _send(stream, args, over_http=False)
            stream.request_close()
            follower.join(timeout=CLOSE_TIMEOUT_S)
        view = stream.close()
    document: dict[str, Any] = {"stream": view, "final": final[0] if final else None}

    def human() -> str:
        decision, frames = view["decision"], view["frames"]
        return (
            f"final: {decision['verdict'] or 'no decision'} (score {decision['score']}), {decision['changes']} "
            f"decision change(s); frames received {frames['received']}, scored {frames['scored']}, dropped "
            f"{frames['dropped']}; stored as job {view['id']} (verity result {view['id']})"
        )

    out.emit(document, human)
    return EXIT_OK


def add_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    stream = sub.add_parser(
        "stream", parents=[common], help="replay a video file (or a camera) as a live stream; print decisions"
    )
    stream.add_argument("source", metavar="FILE_OR_DEVICE", help="a video file, or a camera device such as /dev/video0")
    stream.add_argument("--fps", type=float, default=2.0, help="frames per second to send (default 2)")
    stream.add_argument(
        "--strategy",
        default="window",
        help="KIND[,KEY=VALUE...]: window (Option A) or per_frame (Option B), with fps, window, averaging, "
        "ema_alpha, t_low, t_high, hysteresis, min_frames or agg.MEMBER (default: window)",
    )
    stream.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    stream.add_argument("--webhook-url", default=None, help="also send stream.decision webhooks here")
    stream.add_argument("--http", action="store_true", help="POST frames and read Server-Sent Events, no WebSocket")
    stream.add_argument("--fast", action="store_true", help="send frames as fast as allowed, not at real time")
