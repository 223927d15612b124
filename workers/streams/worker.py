"""The stream worker: holds sessions, scores their frames in batches, stores each frame's score as it is scored,
publishes decisions, closes sessions (on request or when idle) into their job's result.

Holding a session = its entry in the SESSIONS stream is pending with this worker, refreshed every beat. A worker
that stops beating (killed) leaves its entries idle; after VERITY_STREAM_TAKEOVER_S another worker claims them
(XAUTOCLAIM), rebuilds each session's decider from its stored frames, claims the frames the dead worker had been
handed and carries on. A frame stored twice is written once (db.streams.record_frame).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, cast

import redis
from sqlalchemy.exc import OperationalError

from core.queue import enqueue_webhook
from core.settings import Settings
from core.streams.channel import (
    FRAMES_GROUP,
    SESSIONS,
    SESSIONS_GROUP,
    QueuedFrame,
    StreamChannel,
    frames_key,
)
from core.streams.strategy import StreamStrategy
from core.vocabulary import StreamStatus
from db import streams as rows
from workers import calibration_cache
from workers.members import member_specs, pack_fusion_spec
from workers.resources import Resources
from workers.streams.scorer import FrameScorer, ScoredImage
from workers.streams.session import IDENTITY, Ensemble, HeldSession

log = logging.getLogger(__name__)

READ_BLOCK_MS = 50  # how long a worker with sessions waits for frames before its other duties
FRAMES_PER_READ = 4  # per session and read: the worker's batch grows with the sessions it holds


@dataclass
class Held:
    session: HeldSession
    entry_id: str  # its SESSIONS entry, pending with this worker
    pending_first: bool = True  # frames handed to the previous holder are read before new ones
    # When this worker took the session or last scored one of its frames: frames waiting for a worker that was
    # starting (or taking over) do not make the session idle.
    active_at: float = field(default_factory=time.time)


class StreamWorker:
    def __init__(self, settings: Settings, resources: Resources, name: str | None = None) -> None:
        self.settings = settings
        self.link = StreamChannel.from_url(settings.broker_url)
        self.redis = self.link.client
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.scorer = FrameScorer(resources)
        self.resources = resources
        self.held: dict[uuid.UUID, Held] = {}
        self.beat_s = max(0.2, settings.streams.takeover_s / 4)

    def ensemble(self) -> Ensemble:
        pack = self.resources.pack
        current = calibration_cache.active()
        fusion = pack_fusion_spec(pack) if current is None else current.fusion_spec(pack_fusion_spec(pack))
        return Ensemble(
            tuple(member_specs(pack)),
            fusion,
            IDENTITY if current is None else current.state,
            f"{pack.manifest.name}@{pack.manifest.version}",
            pack.manifest.test_pack,
            {} if current is None else current.per_frame,
        )

    # -- holding sessions ------------------------------------------------------------------------------------
    def beat(self) -> None:
        """Refresh the sessions still ours, drop those another worker took, take stale and new ones."""
        self.link.ensure_sessions_group()
        mine = cast(
            list[dict[str, Any]],
            self.redis.xpending_range(SESSIONS, SESSIONS_GROUP, "-", "+", 10_000, consumername=self.name),
        )
        still = {_text(p["message_id"]) for p in mine}
        for sid, held in list(self.held.items()):
            if held.entry_id not in still:
                log.warning("stream %s was taken over by another worker", sid)
                del self.held[sid]
        refresh: list[int | bytes | str | memoryview] = [h.entry_id for h in self.held.values()]
        if refresh:  # resets their idle time: what tells the other workers this one is alive
            self.redis.xclaim(SESSIONS, SESSIONS_GROUP, self.name, 0, refresh, justid=True)
        free = self.settings.streams.worker_sessions - len(self.held)
        if free > 0:
            takeover_ms = int(self.settings.streams.takeover_s * 1000)
            claimed: list[Any] = self.redis.xautoclaim(
                SESSIONS, SESSIONS_GROUP, self.name, takeover_ms, "0-0", count=free
            )
            for entry_id, fields in claimed[1]:
                self._take(_text(entry_id), fields, takeover=True)
        free = self.settings.streams.worker_sessions - len(self.held)
        if free > 0:
            fresh = cast(Any, self.redis.xreadgroup(SESSIONS_GROUP, self.name, {SESSIONS: ">"}, count=free))
            for _stream, entries in fresh or []:
                for entry_id, fields in entries:
                    self._take(_text(entry_id), fields, takeover=False)
        for sid in list(self.held):
            self._close_if_idle(sid)

    def _take(self, entry_id: str, fields: dict[bytes, bytes] | None, takeover: bool) -> None:
        raw = (fields or {}).get(b"session")
        stream = rows.hold(uuid.UUID(raw.decode()), self.name) if raw else None
        if stream is None or stream.status == StreamStatus.CLOSED.value:
            self._done(entry_id)
            return
        session = HeldSession(stream.id, StreamStrategy.from_mapping(stream.strategy), stream.updates, self.ensemble())
        stored = rows.stored_frames(stream.id)
        session.replay(stored)
        if takeover:
            # The frames the dead worker had been handed become ours, read (oldest first) before new ones.
            self.redis.xautoclaim(frames_key(stream.id), FRAMES_GROUP, self.name, 0, "0-0", count=10_000)
            log.info("stream %s taken over after %d stored frames", stream.id, len(stored))
        self.held[stream.id] = Held(session, entry_id)

    def _done(self, entry_id: str) -> None:
        self.redis.xack(SESSIONS, SESSIONS_GROUP, entry_id)
        self.redis.xdel(SESSIONS, entry_id)

    # -- frames ----------------------------------------------------------------------------------------------
    def read(self, block_ms: int) -> list[tuple[Held, QueuedFrame]]:
        if not self.held:
            return []
        out: list[tuple[Held, QueuedFrame]] = []
        for held in [h for h in self.held.values() if h.pending_first]:
            key = frames_key(held.session.id)
            got = cast(Any, self.redis.xreadgroup(FRAMES_GROUP, self.name, {key: "0"}, count=10_000))
            for _key, entries in got or []:
                for entry_id, fields in entries:
                    if not fields:  # deleted while pending: nothing left to score
                        self._ack(held.session.id, _text(entry_id))
            out += _frames(held, got)
            held.pending_first = False
        if out:
            return out
        streams: dict[bytes | str | memoryview, int | bytes | str | memoryview] = {
            frames_key(h.session.id): ">" for h in self.held.values()
        }
        got = cast(Any, self.redis.xreadgroup(FRAMES_GROUP, self.name, streams, count=FRAMES_PER_READ, block=block_ms))
        by_key = {frames_key(h.session.id): h for h in self.held.values()}
        for key, entries in got or []:
            out += _frames(by_key[_text(key)], [(key, entries)])
        return out

    def process(self, batch: list[tuple[Held, QueuedFrame]]) -> None:
        frames = [(h, f) for h, f in batch if f.kind == "frame" and f.seq > h.session.last_seq]
        try:
            scored = self.scorer.score([f.image for _h, f in frames]) if frames else []
        except Exception as exc:  # a frame that breaks the detectors must not take the worker (and its sessions) down
            log.exception("scoring %d stream frames failed; they count as frames without a face", len(frames))
            scored = [ScoredImage([], f"scoring failed: {type(exc).__name__}: {exc}"[:300]) for _ in frames]
        results = {(h.session.id, f.entry_id): s for (h, f), s in zip(frames, scored, strict=True)}
        for held, frame in batch:
            sid = held.session.id
            if sid not in self.held:
                continue  # closed earlier in this batch
            if frame.kind == "close":
                self.close(sid, "closed", frame.entry_id)
                continue
            image = results.get((sid, frame.entry_id))
            if image is not None:
                self._record(held, frame, image)
                held.active_at = time.time()
            self._ack(sid, frame.entry_id)

    def _record(self, held: Held, frame: QueuedFrame, image: ScoredImage) -> None:
        session = held.session
        if image.error:
            log.info("stream %s frame %d: %s", session.id, frame.seq, image.error)
        scored, decision = session.apply(frame, image)
        webhook = session.webhook(decision, frame.seq) if decision.changed else None
        _written, delivery = rows.record_frame(
            session.id, scored, session.decider.t_low, session.decider.t_high, webhook
        )
        if delivery is not None:
            _send_webhook(delivery)
        dropped = self.link.counters(session.id).dropped
        self.link.publish(session.id, session.event(decision, frame.seq, frame.sent_at, dropped))

    def _ack(self, sid: uuid.UUID, entry_id: str) -> None:
        key = frames_key(sid)
        self.redis.xack(key, FRAMES_GROUP, entry_id)
        self.redis.xdel(key, entry_id)

    # -- closing ---------------------------------------------------------------------------------------------
    def _close_if_idle(self, sid: uuid.UUID) -> None:
        held = self.held[sid]
        last = max(self.link.counters(sid).last_frame_at or 0.0, held.active_at)
        if time.time() - last > self.settings.streams.idle_timeout_s:
            log.info("stream %s idle for %.0f s: closing it", held.session.id, time.time() - last)
            self.close(sid, "idle", None)

    def close(self, sid: uuid.UUID, reason: str, marker: str | None) -> None:
        """The final decision stored as the job's result, published, and the session released."""
        held = self.held.pop(sid)
        counters = self.link.counters(sid)
        rows.close(sid, held.session.result(), counters.received, counters.dropped, reason)
        self.link.publish(sid, held.session.final_event(counters.dropped))
        if marker is not None:
            self._ack(sid, marker)
        self.redis.delete(frames_key(sid))
        self._done(held.entry_id)
        log.info("stream %s closed (%s): %s", sid, reason, held.session.final_verdict())

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        log.info("stream worker %s: up to %d sessions", self.name, self.settings.streams.worker_sessions)
        next_beat = 0.0
        while not stop.is_set():
            try:
                if time.monotonic() >= next_beat:
                    self.beat()
                    next_beat = time.monotonic() + self.beat_s
                batch = self.read(READ_BLOCK_MS)
                if batch:
                    self.process(batch)
                elif not self.held:
                    stop.wait(min(self.beat_s, 0.2))
            except (redis.RedisError, OperationalError) as exc:
                # A frame may be half-handled: let every session go, and take them over again from what is stored
                # once their entries have idled past the takeover (this worker or another).
                log.warning("stream worker: Redis or the database unavailable (%s); releasing its sessions", exc)
                self.held.clear()
                stop.wait(1.0)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _frames(held: Held, got: Any) -> list[tuple[Held, QueuedFrame]]:
    return [
        (held, QueuedFrame.from_fields(entry_id, fields))
        for _key, entries in got or []
        for entry_id, fields in entries
        if fields
    ]


def _send_webhook(delivery_id: uuid.UUID) -> None:
    try:
        enqueue_webhook(str(delivery_id))
    except Exception as exc:  # the relay sends it later
        log.warning("could not enqueue webhook %s: %s", delivery_id, exc)
