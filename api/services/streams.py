"""Live stream sessions, the API's side: open one (strategy, webhook, per-key limit), queue its frames (size,
type, rate; the oldest waiting frame dropped when the worker is behind), show it, close it. No Flask here: the
routes in api/streams.py map the refusals to HTTP statuses.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import redis
from sqlalchemy import delete
from sqlalchemy.orm import Session

from api.serialize import iso
from api.services.errors import Conflict, Invalid, NotFound, OverLimit, TooLarge, Unavailable, Unsupported
from api.services.jobs import vet_webhook
from core.settings import Settings
from core.streams.channel import SessionCounters, StreamChannel
from core.streams.strategy import StreamStrategy
from core.vocabulary import StreamStatus, StreamUpdates
from db import streams as rows
from db.apikeys import Principal
from db.models import Job, StreamSession

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@lru_cache(maxsize=4)
def _channel(broker_url: str) -> StreamChannel:
    return StreamChannel.from_url(broker_url)


def channel(settings: Settings) -> StreamChannel:
    """Streams travel through Redis: the broker's, so the embedded (filesystem) broker has no streams."""
    if not settings.broker_url.startswith(("redis://", "rediss://")):
        raise Unavailable("STREAMS_UNAVAILABLE", "live streams need Redis as the broker (BROKER_URL=redis://...)")
    return _channel(settings.broker_url)


def parse_strategy(data: dict[str, Any]) -> StreamStrategy:
    try:
        return StreamStrategy.from_mapping(data)
    except ValueError as exc:
        raise Invalid("INVALID_STRATEGY", f"strategy: {exc}") from exc


def open_stream(
    session: Session,
    key: Principal,
    strategy: dict[str, Any],
    updates: StreamUpdates,
    webhook_url: str | None,
    metadata: dict[str, Any] | None,
    settings: Settings,
) -> StreamSession:
    """The session and its job, committed by the caller; then ``announce`` it to the workers."""
    parsed = parse_strategy(strategy)
    url = vet_webhook(webhook_url, settings.webhook_allow_private)
    if rows.open_count(session, key.id) >= settings.streams.max_sessions_per_key:
        raise OverLimit(
            "TOO_MANY_STREAMS",
            f"this API key already has {settings.streams.max_sessions_per_key} open streams "
            "(VERITY_STREAM_MAX_SESSIONS_PER_KEY); close one first",
        )
    new = rows.NewStream(key.tenant, key.id, dict(parsed.to_dict()), updates.value, url, metadata or {})
    return rows.open_stream(session, new)


def announce(stream_id: uuid.UUID, settings: Settings) -> None:
    """The committed session handed to the stream workers (Unavailable: see ``discard``)."""
    try:
        channel(settings).open(stream_id)
    except redis.RedisError as exc:
        raise Unavailable("STREAMS_UNAVAILABLE", f"the stream broker is unreachable: {exc}") from exc


def discard(session: Session, stream_id: uuid.UUID) -> None:
    """A session no worker could ever hold (its announcement failed): removed with its job (ON DELETE CASCADE)."""
    session.execute(delete(Job).where(Job.id == stream_id))


def tenant_stream(session: Session, tenant: str, stream_id: uuid.UUID) -> StreamSession:
    stream = rows.tenant_stream(session, tenant, stream_id)
    if stream is None:
        raise NotFound("NOT_FOUND", "no such stream")
    return stream


def check_frame(image: bytes, settings: Settings) -> None:
    if len(image) > settings.streams.max_frame_bytes:
        raise TooLarge(
            "FRAME_TOO_LARGE",
            f"a frame of {len(image)} bytes is over VERITY_STREAM_MAX_FRAME_BYTES ({settings.streams.max_frame_bytes})",
        )
    if not image.startswith((JPEG_MAGIC, PNG_MAGIC)):
        raise Unsupported("UNSUPPORTED_FRAME", "a frame must be a JPEG or PNG image")


@dataclass(frozen=True)
class Queued:
    seqs: list[int]
    received: int
    dropped: int


def send_frames(stream: StreamSession, frames: list[tuple[float, bytes]], settings: Settings) -> Queued:
    """Queue frames (each checked first, all before any is queued) for the session's worker."""
    if stream.status != StreamStatus.OPEN.value:
        raise Conflict("STREAM_CLOSED", f"the stream is {stream.status}; open a new one")
    for _t, image in frames:
        check_frame(image, settings)
    link = channel(settings)
    seqs: list[int] = []
    dropped = 0
    try:
        for t, image in frames:
            queued = link.enqueue(stream.id, image, t, settings.streams.backlog, settings.streams.max_fps)
            if queued.rate_limited:
                raise OverLimit(
                    "FRAME_RATE_EXCEEDED",
                    f"more than {settings.streams.max_fps:g} frames in one second (VERITY_STREAM_MAX_FPS); "
                    f"{len(seqs)} of {len(frames)} frames were accepted",
                )
            seqs.append(queued.seq)
            dropped = queued.dropped
    except redis.RedisError as exc:
        raise Unavailable("STREAMS_UNAVAILABLE", f"the stream broker is unreachable: {exc}") from exc
    return Queued(seqs, seqs[-1], dropped)


def request_close(session: Session, stream: StreamSession) -> bool:
    """CLOSING if it was OPEN (a conditional update: the worker may have closed it meanwhile); True if it moved.
    Commit, then ``send_close``: a marker sent before the commit could be handled, and the session CLOSED, first."""
    return rows.request_close(session, stream.id)


def send_close(stream_id: uuid.UUID, settings: Settings) -> None:
    """The close marker, behind the frames already queued: the worker scores them, then stores the final decision.
    Unsent (Redis down), the CLOSING session closes when it has been idle VERITY_STREAM_IDLE_TIMEOUT_S."""
    try:
        channel(settings).close(stream_id)
    except redis.RedisError as exc:
        raise Unavailable("STREAMS_UNAVAILABLE", f"the stream broker is unreachable: {exc}") from exc


def counters(stream: StreamSession, settings: Settings) -> SessionCounters:
    """Received and dropped: live from Redis while the session is open, as stored once it closed."""
    if stream.status == StreamStatus.CLOSED.value:
        return SessionCounters(stream.frames_received, stream.frames_dropped, None)
    try:
        return channel(settings).counters(stream.id)
    except (redis.RedisError, Unavailable):
        return SessionCounters(stream.frames_received, stream.frames_dropped, None)


def stream_view(stream: StreamSession, job: Job, live: SessionCounters) -> dict[str, Any]:
    base = f"/v1/streams/{stream.id}"
    return {
        "id": str(stream.id),
        "status": stream.status,
        "strategy": stream.strategy,
        "updates": stream.updates,
        "decision": {
            "verdict": stream.verdict,
            "score": stream.score,
            "t_low": stream.t_low,
            "t_high": stream.t_high,
            "changes": stream.decision_changes,
        },
        "frames": {
            "received": live.received,
            "scored": stream.frames_scored,
            "with_face": stream.frames_with_face,
            "dropped": live.dropped,
        },
        "webhook_url": job.webhook_url,
        "metadata": job.metadata_,
        "close_reason": stream.close_reason,
        "created_at": iso(stream.created_at),
        "closed_at": iso(stream.closed_at),
        "links": {
            "self": base,
            "websocket": f"{base}/ws",
            "frames": f"{base}/frames",
            "events": f"{base}/events",
            "job": f"/v1/jobs/{stream.id}",
        },
    }
