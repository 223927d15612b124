"""Live stream routes: open a session, send frames over HTTP, follow its decisions (Server-Sent Events), show it,
close it. The WebSocket (frames in, decisions out) is api/stream_socket.py. A stream's id is its job's id: once
closed, GET /v1/jobs/{id}/result has its final decision and POST /v1/jobs/{id}/feedback labels it."""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, request, stream_with_context
from sqlalchemy import select

from api import stream_socket
from api.auth import current_key, require_role
from api.errors import ApiError, service_errors
from api.jobs import _settings
from api.openapi import responses, spec
from api.services import streams as service
from api.services.errors import Unavailable
from api.stream_schemas import MAX_FRAMES_PER_POST, StreamCreate, StreamFramesAccepted, StreamFramesIn, StreamView
from core.streams.channel import DecisionEvent
from core.vocabulary import Role, StreamStatus, StreamUpdates
from db.models import Job, StreamSession
from db.session import read_scope, session_scope

bp = Blueprint("streams", __name__, url_prefix="/v1/streams")

CLOSE_POLL_S = 0.2
SSE_BLOCK_MS = 5_000  # a comment line at least this often keeps proxies from timing the stream out


def parse_stream_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(raw)
    except ValueError as exc:
        raise ApiError(404, "NOT_FOUND", "no such stream") from exc


@bp.before_request
def _frames_body_cap() -> None:
    """A frames POST carries up to MAX_FRAMES_PER_POST base64 frames: its cap, instead of the JSON routes' 64 KiB."""
    if request.endpoint == "streams.post_frames":
        request.max_content_length = MAX_FRAMES_PER_POST * (_settings().streams.max_frame_bytes * 4 // 3 + 1024)


def _view(session_id: uuid.UUID) -> dict[str, object]:
    with read_scope() as session:
        stream = session.get(StreamSession, session_id)
        job = session.get(Job, session_id)
        assert stream is not None and job is not None
        return service.stream_view(stream, job, service.counters(stream, _settings()))


@bp.post("")
@require_role(Role.SUBMITTER)
@spec.validate(
    json=StreamCreate,
    resp=responses({201: StreamView}, 422, headers={201: {"Location": "The stream's URL."}}),
    tags=["streams"],
)
def create_stream() -> Response:
    """Open a live stream session (seed 000's rolling decisions; seed 001's webcam mode at 1-2 fps).

    Send frames over the WebSocket at ``links.websocket`` (a GET with an upgrade; authenticate with the
    Authorization header, or with a first message ``{"type": "auth", "key": "..."}``, never a key in the URL;
    then JPEG/PNG frames as binary messages, or ``{"type": "frame", "t": seconds, "image": base64}``, and
    ``{"type": "close"}``), or POST them to ``links.frames``. Decisions come back on the WebSocket, on the
    Server-Sent Events at ``links.events`` and as ``stream.decision`` webhooks when the decision changes.
    INVALID_STRATEGY or INVALID_WEBHOOK_URL 422; TOO_MANY_STREAMS 429 (VERITY_STREAM_MAX_SESSIONS_PER_KEY);
    STREAMS_UNAVAILABLE 503. Role: submitter."""
    body: StreamCreate = request.context.json  # type: ignore[attr-defined]
    settings = _settings()
    with service_errors(retry_after_s=1):
        with session_scope() as session:
            stream = service.open_stream(
                session, current_key(), body.strategy, body.updates, body.webhook_url, body.metadata, settings
            )
            stream_id = stream.id
        try:
            service.announce(stream_id, settings)
        except Unavailable:
            with session_scope() as session:
                service.discard(session, stream_id)
            raise
    response = jsonify(_view(stream_id))
    response.status_code = 201
    response.headers["Location"] = f"/v1/streams/{stream_id}"
    return response


@bp.get("/<job_id>")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: StreamView}, 404), tags=["streams"])
def get_stream(job_id: str) -> Response:
    """A stream of the caller's tenant: its decision and its frames received, scored and dropped. Role: submitter."""
    stream_id = parse_stream_id(job_id)
    with service_errors(retry_after_s=1), read_scope() as session:
        service.tenant_stream(session, current_key().tenant, stream_id)
    return jsonify(_view(stream_id))


@bp.delete("/<job_id>")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: StreamView, 202: StreamView}, 404), tags=["streams"])
def close_stream(job_id: str) -> Response:
    """Close a stream: the frames already sent are scored, then its final decision is stored as its job's result.

    200 with the CLOSED stream once that is done (within VERITY_MAX_WAIT_S), else 202 with it CLOSING. Closing a
    closed stream answers 200 again. Role: submitter."""
    stream_id = parse_stream_id(job_id)
    settings = _settings()
    with service_errors(retry_after_s=1):
        with session_scope() as session:
            moved = service.request_close(session, service.tenant_stream(session, current_key().tenant, stream_id))
        if moved:
            service.send_close(stream_id, settings)
    deadline = time.monotonic() + settings.max_wait_s
    while True:
        view = _view(stream_id)
        if view["status"] == StreamStatus.CLOSED.value or time.monotonic() >= deadline:
            break
        time.sleep(CLOSE_POLL_S)
    response = jsonify(view)
    response.status_code = 200 if view["status"] == StreamStatus.CLOSED.value else 202
    return response


# websocket=True: werkzeug routes only WebSocket upgrades here (a plain GET is a 400 that names the mismatch).
@bp.get("/<job_id>/ws", websocket=True)
def websocket(job_id: str) -> Response:
    """The stream's WebSocket (see api/stream_socket.py). Not an OpenAPI operation: the protocol is described on
    POST /v1/streams."""
    return stream_socket.handle(parse_stream_id(job_id), _settings())


def _decoded(image: str) -> bytes:
    try:
        return base64.b64decode(image, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "INVALID_PARAMETER", "frames.image: not valid base64") from exc


@bp.post("/<job_id>/frames")
@require_role(Role.SUBMITTER)
@spec.validate(json=StreamFramesIn, resp=responses({202: StreamFramesAccepted}, 404, 409, 413, 415), tags=["streams"])
def post_frames(job_id: str) -> Response:
    """Send one or a few frames (oldest first) over plain HTTP, for clients that cannot hold a WebSocket.

    Each is a JPEG or PNG, base64 in ``image``, at most VERITY_STREAM_MAX_FRAME_BYTES (413 FRAME_TOO_LARGE; 415
    UNSUPPORTED_FRAME), at most VERITY_STREAM_MAX_FPS per second (429 FRAME_RATE_EXCEEDED). A stream that is
    closing or closed: 409 STREAM_CLOSED. When the worker is behind, the oldest frames still waiting are dropped
    and counted in ``frames_dropped``. Role: submitter."""
    stream_id = parse_stream_id(job_id)
    body: StreamFramesIn = request.context.json  # type: ignore[attr-defined]
    frames = [(f.t, _decoded(f.image)) for f in body.frames]
    with service_errors(retry_after_s=1):
        with read_scope() as session:
            stream = service.tenant_stream(session, current_key().tenant, stream_id)
        queued = service.send_frames(stream, frames, _settings())
    response = jsonify({"seqs": queued.seqs, "frames_received": queued.received, "frames_dropped": queued.dropped})
    response.status_code = 202
    return response


def wanted(event: DecisionEvent, updates: str) -> bool:
    """Whether a client following with ``updates`` gets this event."""
    return updates == StreamUpdates.FRAMES.value or event["changed"] or event["type"] == "closed"


# Documented in api/openapi.py's EXTERNAL_ROUTES: spectree's response check would read the endless body.
@bp.get("/<job_id>/events")
@require_role(Role.SUBMITTER)
def stream_events(job_id: str) -> Response:
    """The stream's decisions as Server-Sent Events (``event: decision``, then one ``event: closed`` with the
    final decision and the job id, after which the response ends); ``Last-Event-ID`` resumes after an event.
    Which decisions: the stream's ``updates``. Role: submitter."""
    stream_id = parse_stream_id(job_id)
    settings = _settings()
    with service_errors(retry_after_s=1):
        with read_scope() as session:
            stream = service.tenant_stream(session, current_key().tenant, stream_id)
            updates = stream.updates
        link = service.channel(settings)
    after = request.headers.get("Last-Event-ID") or "0"

    def events() -> Iterator[str]:
        nonlocal after
        yield ": verity stream events\n\n"
        while True:
            batch = link.decisions(stream_id, after, SSE_BLOCK_MS)
            if not batch:
                if _closed(stream_id):
                    return
                yield ": keep-alive\n\n"
                continue
            for entry_id, event in batch:
                after = entry_id
                if wanted(event, updates):
                    yield f"id: {entry_id}\nevent: {event['type']}\ndata: {json.dumps(event)}\n\n"
                if event["type"] == "closed":
                    return

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return Response(stream_with_context(events()), mimetype="text/event-stream", headers=headers)


def _closed(stream_id: uuid.UUID) -> bool:
    with read_scope() as session:
        status = session.scalar(select(StreamSession.status).where(StreamSession.id == stream_id))
    return status in (None, StreamStatus.CLOSED.value)
