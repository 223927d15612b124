"""The Redis side of live streams, shared by the API (which writes frames and reads decisions) and the stream
workers (which read frames and write decisions). Torch-free and database-free.

* ``SESSIONS``: one entry per opened session, read by the stream workers' consumer group. The entry stays pending
  with the worker that holds the session until the session closes; the worker touches it every beat, so an
  entry idle longer than VERITY_STREAM_TAKEOVER_S belongs to a dead worker and another one claims it (XAUTOCLAIM).
* ``frames_key``: a session's frames waiting to be scored (and, last, a close marker), read by the consumer group
  ``FRAMES_GROUP``; an entry is acknowledged and deleted once its frame's score is stored. At most ``backlog``
  frames wait: the oldest one not yet handed to a worker is dropped for a new one, and counted.
* ``state_key``: a hash of counters the API keeps as frames arrive (received, dropped) and the rate window.
* ``decisions_key``: the decisions the worker made (every scored frame's, then the final one), capped, which the
  WebSocket and Server-Sent Events routes relay.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any, Literal, TypedDict, cast

import redis

SESSIONS = "verity:streams:sessions"
SESSIONS_GROUP = "stream-workers"
FRAMES_GROUP = "scorers"
DECISIONS_KEPT = 1000  # decisions a late SSE / WebSocket reader can still catch up on
STATE_TTL_S = 24 * 3600  # a session's keys outlive it this long after its last use, for its readers

FrameKind = Literal["frame", "close"]


def frames_key(session_id: uuid.UUID | str) -> str:
    return f"verity:stream:{session_id}:frames"


def state_key(session_id: uuid.UUID | str) -> str:
    return f"verity:stream:{session_id}:state"


def decisions_key(session_id: uuid.UUID | str) -> str:
    return f"verity:stream:{session_id}:decisions"


class DecisionEvent(TypedDict):
    """One decision as the WebSocket, the SSE stream and the decisions stream carry it.

    ``type``: "decision" after a scored frame, "closed" once with the final decision (``job_id`` then set).
    ``sent_at``: when the API took the frame (epoch seconds), so a client can measure send -> decision.
    """

    type: str
    stream_id: str
    seq: int
    t: float | None
    frames_seen: int
    frames_with_face: int
    frames_dropped: int
    score: float | None
    verdict: str | None
    changed: bool
    t_low: float | None
    t_high: float | None
    sent_at: float | None
    job_id: str | None


def encode_event(event: DecisionEvent) -> bytes:
    return json.dumps(event, separators=(",", ":")).encode()


def decode_event(raw: bytes | str) -> DecisionEvent:
    return cast(DecisionEvent, json.loads(raw))


@dataclass(frozen=True)
class QueuedFrame:
    """A frame (or the close marker) as a worker reads it from a session's frames stream."""

    entry_id: str
    kind: FrameKind
    seq: int
    t: float
    sent_at: float
    image: bytes

    @classmethod
    def from_fields(cls, entry_id: bytes | str, fields: dict[bytes, bytes]) -> QueuedFrame:
        kind: FrameKind = "close" if fields.get(b"kind") == b"close" else "frame"
        return cls(
            entry_id.decode() if isinstance(entry_id, bytes) else entry_id,
            kind,
            int(fields.get(b"seq", b"0")),
            float(fields.get(b"t", b"0")),
            float(fields.get(b"sent_at", b"0")),
            fields.get(b"image", b""),
        )


@dataclass(frozen=True)
class Enqueued:
    """What queueing one frame did: its number, and the frames dropped so far; ``rate_limited`` refused it."""

    seq: int
    dropped: int
    rate_limited: bool


# Atomic per frame: the rate window (frames in the current second), then make room (delete the oldest frame no
# worker was handed yet while ``backlog`` frames wait), then add it. Frames a worker was handed are never
# dropped: they are being scored. KEYS: frames stream, state hash. ARGV: backlog, max frames per second, group,
# t, image, ttl.
_ENQUEUE = """
local now = redis.call('TIME')
local second = tonumber(now[1])
local sent_at = now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
if tonumber(redis.call('HGET', KEYS[2], 'rate_second') or '-1') == second then
  if tonumber(redis.call('HGET', KEYS[2], 'rate_count') or '0') >= tonumber(ARGV[2]) then
    return {-1, tonumber(redis.call('HGET', KEYS[2], 'dropped') or '0')}
  end
  redis.call('HINCRBY', KEYS[2], 'rate_count', 1)
else
  redis.call('HSET', KEYS[2], 'rate_second', second, 'rate_count', 1)
end
local last = '0-0'
for _, group in ipairs(redis.call('XINFO', 'GROUPS', KEYS[1])) do
  local name, delivered
  for i = 1, #group, 2 do
    if group[i] == 'name' then name = group[i + 1] end
    if group[i] == 'last-delivered-id' then delivered = group[i + 1] end
  end
  if name == ARGV[3] then last = delivered end
end
local waiting = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', tonumber(ARGV[1]))
if #waiting >= tonumber(ARGV[1]) then
  redis.call('XDEL', KEYS[1], waiting[1][1])
  redis.call('HINCRBY', KEYS[2], 'dropped', 1)
end
local seq = redis.call('HINCRBY', KEYS[2], 'received', 1)
redis.call('HSET', KEYS[2], 'last_frame_at', sent_at)
redis.call('XADD', KEYS[1], '*', 'kind', 'frame', 'seq', seq, 't', ARGV[4], 'sent_at', sent_at, 'image', ARGV[5])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[6]))
redis.call('EXPIRE', KEYS[2], tonumber(ARGV[6]))
return {seq, tonumber(redis.call('HGET', KEYS[2], 'dropped') or '0')}
"""


@dataclass(frozen=True)
class SessionCounters:
    received: int
    dropped: int
    last_frame_at: float | None


class StreamChannel:
    """The Redis commands of a stream, one place for the API and the workers."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._enqueue = client.register_script(_ENQUEUE)

    @classmethod
    def from_url(cls, url: str) -> StreamChannel:
        return cls(redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=2))

    def open(self, session_id: uuid.UUID) -> None:
        """The session's frames group, then its announcement to the stream workers."""
        self.client.xgroup_create(frames_key(session_id), FRAMES_GROUP, id="0", mkstream=True)
        self.client.expire(frames_key(session_id), STATE_TTL_S)
        self.client.hset(state_key(session_id), mapping={"received": 0, "dropped": 0})
        self.client.expire(state_key(session_id), STATE_TTL_S)
        self.ensure_sessions_group()
        self.client.xadd(SESSIONS, {"session": str(session_id)})

    def ensure_sessions_group(self) -> None:
        try:
            self.client.xgroup_create(SESSIONS, SESSIONS_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def enqueue(self, session_id: uuid.UUID, image: bytes, t: float, backlog: int, max_fps: float) -> Enqueued:
        args: list[bytes | str | int] = [
            backlog,
            max(1, int(max_fps)),
            FRAMES_GROUP,
            repr(float(t)),
            image,
            STATE_TTL_S,
        ]
        seq, dropped = cast(list[int], self._enqueue(keys=[frames_key(session_id), state_key(session_id)], args=args))
        return Enqueued(int(seq), int(dropped), rate_limited=int(seq) < 0)

    def close(self, session_id: uuid.UUID) -> None:
        """The close marker, after every frame already queued."""
        self.client.xadd(frames_key(session_id), {"kind": "close"})

    def counters(self, session_id: uuid.UUID) -> SessionCounters:
        raw = cast(dict[bytes, bytes], self.client.hgetall(state_key(session_id)))
        last = raw.get(b"last_frame_at")
        return SessionCounters(
            int(raw.get(b"received", b"0")), int(raw.get(b"dropped", b"0")), float(last) if last else None
        )

    def publish(self, session_id: uuid.UUID, event: DecisionEvent) -> None:
        key = decisions_key(session_id)
        self.client.xadd(key, {"event": encode_event(event)}, maxlen=DECISIONS_KEPT, approximate=True)
        self.client.expire(key, STATE_TTL_S)

    def decisions(self, session_id: uuid.UUID, after: str, block_ms: int) -> list[tuple[str, DecisionEvent]]:
        """Decisions after the entry id ``after`` ("0": from the first kept, "$": only new ones), waiting up to
        ``block_ms`` for one; each with its entry id (the SSE event id)."""
        read = cast(Any, self.client.xread({decisions_key(session_id): after}, block=block_ms, count=100))
        return [
            (entry_id.decode(), decode_event(fields[b"event"]))
            for _stream, entries in read or []
            for entry_id, fields in entries
        ]

    def last_decision_id(self, session_id: uuid.UUID) -> str:
        """The newest decision's entry id ("0-0" with none): read after it for only what comes next."""
        newest = cast(Any, self.client.xrevrange(decisions_key(session_id), count=1))
        return str(newest[0][0].decode()) if newest else "0-0"
