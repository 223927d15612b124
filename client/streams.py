"""The client side of live streams: open one, send frames (over a WebSocket, or plain HTTP), follow the decisions,
close it into a stored result.

    stream = open_stream(client, {"kind": "window"})
    with stream.connect():                    # the WebSocket, authenticated by its Authorization header
        stream.send(jpeg_bytes, t=0.0)
        for decision in stream.decisions(timeout=1.0):
            ...
    final = stream.close()                    # the job id: final["id"]; client.result(final["id"])
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypedDict, cast

from simple_websocket import Client as WebSocket
from simple_websocket import ConnectionClosed

from client.types import Json, StreamFramesJson, StreamJson

if TYPE_CHECKING:
    from client.api import VerityClient


class StreamDecisionJson(TypedDict):
    """A decision as the WebSocket and the Server-Sent Events carry it (core.streams.channel.DecisionEvent; not in
    the OpenAPI document, which describes HTTP bodies). ``type``: decision, closed (the final one, ``job_id`` set)
    or error (then only ``error``)."""

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


class StreamClosedError(Exception):
    """The WebSocket ended: the stream closed (the final decision was received) or the connection dropped."""


class LiveStream:
    """One open stream of ``client``'s key. ``view`` is the stream as the server last described it."""

    def __init__(self, client: VerityClient, view: StreamJson) -> None:
        self.client = client
        self.view = view
        self.id = view["id"]
        self._ws: WebSocket | None = None
        self.final: StreamDecisionJson | None = None

    # -- the WebSocket ---------------------------------------------------------------------------------------
    def connect(self) -> LiveStream:
        url = self.client.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        auth = self.client.session.headers.get("Authorization")
        headers = {"Authorization": str(auth)} if auth else None
        self._ws = WebSocket.connect(url + self.view["links"]["websocket"], headers=headers)
        return self

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.disconnect()

    def disconnect(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(ConnectionClosed):  # the server closed it after the final decision
                self._ws.close()
            self._ws = None

    def send(self, image: bytes, t: float | None = None) -> None:
        """One JPEG/PNG frame over the WebSocket; ``t`` its time in seconds (None: the server's clock)."""
        if self._ws is None:
            raise StreamClosedError("not connected: call connect() first, or use post_frames()")
        if t is None:
            self._ws.send(image)
        else:
            self._ws.send(json.dumps({"type": "frame", "t": t, "image": base64.b64encode(image).decode()}))

    def request_close(self) -> None:
        """Ask over the WebSocket for the stream to close; the final decision arrives as a "closed" message."""
        if self._ws is not None:
            self._ws.send(json.dumps({"type": "close"}))

    def decisions(self, timeout: float | None = None) -> Iterator[StreamDecisionJson]:
        """Messages from the WebSocket (decisions, errors, the final "closed" one) until ``timeout`` seconds pass
        without one (None: until the stream closes)."""
        if self._ws is None:
            raise StreamClosedError("not connected: call connect() first, or use events()")
        while True:
            try:
                raw = self._ws.receive(timeout=timeout)
            except ConnectionClosed:
                return
            if raw is None:
                return
            message = cast(StreamDecisionJson, json.loads(raw))
            if message.get("type") == "closed":
                self.final = message
            yield message
            if message.get("type") == "closed":
                return

    # -- plain HTTP ------------------------------------------------------------------------------------------
    def post_frames(self, frames: Sequence[tuple[float, bytes]]) -> StreamFramesJson:
        """One or a few (t, JPEG/PNG) frames, oldest first, over HTTP."""
        body = {"frames": [{"t": t, "image": base64.b64encode(image).decode()} for t, image in frames]}
        return cast(StreamFramesJson, self.client._json("POST", f"/v1/streams/{self.id}/frames", json=body))

    def events(self, timeout: float = 60.0) -> Iterator[StreamDecisionJson]:
        """The decisions as Server-Sent Events, until the final one (or ``timeout`` seconds of silence)."""
        path = f"/v1/streams/{self.id}/events"
        with self.client._request("GET", path, stream=True, timeout=timeout) as response:
            data: list[str] = []
            for line in response.iter_lines(decode_unicode=True):
                if line.startswith("data:"):
                    data.append(line[5:].strip())
                elif not line and data:
                    event = cast(StreamDecisionJson, json.loads("\n".join(data)))
                    data = []
                    if event.get("type") == "closed":
                        self.final = event
                    yield event
                    if event.get("type") == "closed":
                        return

    def refresh(self) -> StreamJson:
        self.view = cast(StreamJson, self.client._json("GET", f"/v1/streams/{self.id}"))
        return self.view

    def close(self) -> StreamJson:
        """Close the stream (frames already sent are scored first): the CLOSED stream, whose id is its job's."""
        self.disconnect()
        self.view = cast(StreamJson, self.client._json("DELETE", f"/v1/streams/{self.id}"))
        return self.view


def open_stream(
    client: VerityClient,
    strategy: Json | None = None,
    updates: str = "changes",
    webhook_url: str | None = None,
    metadata: Json | None = None,
) -> LiveStream:
    body: dict[str, Any] = {"strategy": strategy or {"kind": "window"}, "updates": updates}
    if webhook_url:
        body["webhook_url"] = webhook_url
    if metadata is not None:
        body["metadata"] = metadata
    return LiveStream(client, cast(StreamJson, client._json("POST", "/v1/streams", json=body)))
