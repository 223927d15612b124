"""A live stream's WebSocket (seed 001's webcam mode): frames in, decisions out, on one connection.

Authentication before the upgrade when the request carries a key in its headers (401/403/404 as on any route),
else by the first message, ``{"type": "auth", "key": "..."}`` (browsers cannot set headers on a WebSocket); a key
in the URL is never read. Then the client sends frames, as binary messages (a JPEG or PNG; its time is the server's
since the stream opened) or as ``{"type": "frame", "t": seconds, "image": base64}``, and ``{"type": "close"}`` to
close the stream. The server sends ``{"type": "decision", ...}`` (see core.streams.channel.DecisionEvent) as the
stream's ``updates`` say, ``{"type": "error", "error": {"code", "message"}}`` for a refused frame, and once the
stream is closed ``{"type": "closed", ...}`` with the final decision and its job id, then closes the connection.

Threads: the request's thread receives frames; a second one relays decisions, so a decision goes out as soon as
the worker publishes it. Under gunicorn's gthread workers each connection holds one thread (api/gunicorn_conf.py).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Response, request
from simple_websocket import ConnectionClosed, Server

from api import ratelimit
from api.auth import key_principal, may, presented_key
from api.errors import ApiError
from api.services import streams as service
from api.services.errors import ServiceError
from core.settings import Settings
from core.streams.channel import StreamChannel
from core.vocabulary import Role, StreamStatus, StreamUpdates
from db.apikeys import Principal
from db.models import StreamSession
from db.session import read_scope, session_scope

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0  # the first message must come this soon when the upgrade carried no key
RECEIVE_POLL_S = 1.0
DECISION_BLOCK_MS = 1000
# WebSocket close codes: policy violation (authentication), and the application range for "not found".
CLOSE_POLICY = 1008
CLOSE_NOT_FOUND = 4404


class _Handled(Response):
    """What the view returns once the WebSocket is over: gunicorn must not write an HTTP response on the socket it
    handed over (StopIteration tells its gthread worker to close the connection), werkzeug's server expects one."""

    mode = "werkzeug"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "gunicorn":
            raise StopIteration()
        return super().__call__(*args, **kwargs)


def _principal(plaintext: str) -> Principal:
    principal = key_principal(plaintext)
    if principal is None:
        raise ApiError(401, "UNAUTHENTICATED", "the API key is invalid or revoked")
    ratelimit.enforce(principal.prefix)
    if not may(principal, Role.SUBMITTER):
        raise ApiError(403, "FORBIDDEN", "this action needs the submitter role")
    return principal


def _stream(principal: Principal, stream_id: uuid.UUID) -> StreamSession:
    with read_scope() as session:
        stream = session.get(StreamSession, stream_id)
        if stream is None or stream.tenant != principal.tenant:
            raise ApiError(404, "NOT_FOUND", "no such stream")
        session.expunge(stream)
        return stream


def handle(stream_id: uuid.UUID, settings: Settings) -> Response:
    """The view's work: checks that can still answer over HTTP, then the upgrade and the session."""
    principal = None
    if (plaintext := presented_key()) is not None:
        principal = _principal(plaintext)
        _stream(principal, stream_id)
    link = service.channel(settings)
    ws = Server(request.environ, max_message_size=settings.streams.max_frame_bytes * 2 + 4096)
    try:
        _Socket(ws, link, settings).run(principal, stream_id)
    except ConnectionClosed:
        pass
    finally:
        with contextlib.suppress(ConnectionClosed):  # already closed, by either side
            ws.close()
    done = _Handled()
    done.mode = ws.mode
    return done


class _Socket:
    def __init__(self, ws: Server, link: StreamChannel, settings: Settings) -> None:
        self.ws = ws
        self.link = link
        self.settings = settings
        self._send_lock = threading.Lock()
        self._over = threading.Event()

    def send(self, message: dict[str, Any]) -> None:
        with self._send_lock:
            self.ws.send(json.dumps(message))

    def error(self, code: str, message: str) -> None:
        self.send({"type": "error", "error": {"code": code, "message": message}})

    def refuse(self, code: str, message: str, close_code: int) -> None:
        self.error(code, message)
        with contextlib.suppress(ConnectionClosed):
            self.ws.close(reason=close_code, message=code)

    def run(self, principal: Principal | None, stream_id: uuid.UUID) -> None:
        if principal is None:
            principal = self._first_message(stream_id)
            if principal is None:
                return
        stream = _stream(principal, stream_id)
        if stream.status != StreamStatus.OPEN.value:
            self.refuse("STREAM_CLOSED", f"the stream is {stream.status}; open a new one", CLOSE_NOT_FOUND)
            return
        relay = threading.Thread(target=self._relay, args=(stream,), name=f"ws-{stream_id}", daemon=True)
        relay.start()
        try:
            self._receive(principal, stream)
        finally:
            self._over.set()
            relay.join(timeout=5)

    def _first_message(self, stream_id: uuid.UUID) -> Principal | None:
        raw = self.ws.receive(timeout=AUTH_TIMEOUT_S)
        message = _parse(raw) if isinstance(raw, str) else None
        key = message.get("key") if message is not None and message.get("type") == "auth" else None
        if not isinstance(key, str) or not key:
            self.refuse("UNAUTHENTICATED", 'send {"type": "auth", "key": "..."} first', CLOSE_POLICY)
            return None
        try:
            principal = _principal(key)
            _stream(principal, stream_id)
        except ApiError as exc:
            self.refuse(exc.code, exc.message, CLOSE_NOT_FOUND if exc.status == 404 else CLOSE_POLICY)
            return None
        return principal

    def _receive(self, principal: Principal, stream: StreamSession) -> None:
        opened = stream.created_at.replace(tzinfo=stream.created_at.tzinfo or UTC)
        while not self._over.is_set():
            raw = self.ws.receive(timeout=RECEIVE_POLL_S)
            if raw is None:
                continue
            if isinstance(raw, bytes):
                self._frame(stream, (datetime.now(UTC) - opened).total_seconds(), raw)
                continue
            message = _parse(raw)
            kind = message.get("type") if message is not None else None
            if kind == "frame" and message is not None:
                self._json_frame(stream, message)
            elif kind == "close":
                self._close(principal, stream.id)
            elif kind != "auth":
                self.error("INVALID_MESSAGE", 'expected a binary frame or {"type": "frame" | "close", ...}')

    def _json_frame(self, stream: StreamSession, message: dict[str, Any]) -> None:
        t, image = message.get("t"), message.get("image")
        if isinstance(t, bool) or not isinstance(t, int | float) or not isinstance(image, str) or t < 0:
            self.error("INVALID_MESSAGE", "a frame message needs t (seconds >= 0) and image (base64 JPEG/PNG)")
            return
        try:
            data = base64.b64decode(image, validate=True)
        except (binascii.Error, ValueError):
            self.error("INVALID_MESSAGE", "image: not valid base64")
            return
        self._frame(stream, float(t), data)

    def _frame(self, stream: StreamSession, t: float, image: bytes) -> None:
        try:
            service.send_frames(stream, [(t, image)], self.settings)
        except ServiceError as exc:
            self.error(exc.code, exc.message)

    def _close(self, principal: Principal, stream_id: uuid.UUID) -> None:
        try:
            with session_scope() as session:
                moved = service.request_close(session, service.tenant_stream(session, principal.tenant, stream_id))
            if moved:
                service.send_close(stream_id, self.settings)
        except ServiceError as exc:
            self.error(exc.code, exc.message)

    def _relay(self, stream: StreamSession) -> None:
        """Decisions from the worker to the client until the stream's closed event (or the client left)."""
        after = self.link.last_decision_id(stream.id)
        try:
            while not self._over.is_set():
                for entry_id, event in self.link.decisions(stream.id, after, DECISION_BLOCK_MS):
                    after = entry_id
                    if stream.updates == StreamUpdates.FRAMES.value or event["changed"] or event["type"] == "closed":
                        self.send(dict(event))
                    if event["type"] == "closed":
                        self._over.set()
                        with contextlib.suppress(ConnectionClosed):
                            self.ws.close()
                        return
        except ConnectionClosed:
            self._over.set()
        except Exception:
            log.exception("relaying the decisions of stream %s", stream.id)
            self._over.set()


def _parse(raw: str) -> dict[str, Any] | None:
    try:
        message = json.loads(raw)
    except ValueError:
        return None
    return message if isinstance(message, dict) else None
