"""Pydantic models of the live-stream routes (api/streams.py): request validation and the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from core.vocabulary import StreamStatus, StreamUpdates, Verdict

MAX_FRAMES_PER_POST = 8
STREAM_METADATA_MAX_KEYS = 64


class StreamCreate(BaseModel):
    """JSON body of POST /v1/streams. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    strategy: dict[str, Any] = Field(
        default_factory=lambda: {"kind": "window"},
        description='How frames become a decision: {"kind": "window"} (seed 000\'s Option A: the last `window` '
        'frames with a face through the pack\'s aggregators, calibration and fusion) or {"kind": "per_frame"} (Option '
        "B: fuse each frame, then average over time, `averaging` mean or ema); optional fps, window, aggregators, "
        "averaging, ema_alpha, t_low and t_high (both or neither: the calibrated ones), hysteresis (logit margin), "
        "min_frames.",
    )
    updates: StreamUpdates = Field(
        StreamUpdates.CHANGES,
        description="What the WebSocket and the event stream carry: changes (each decision change and the final "
        "decision) or frames (the decision after every scored frame).",
    )
    webhook_url: str | None = Field(
        None, max_length=2048, description="http(s) URL that gets a stream.decision webhook when the decision changes."
    )
    metadata: dict[str, Any] | None = Field(None, description="A JSON object stored with the stream's job.")


class StreamFrameIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    t: float = Field(ge=0, description="The frame's time in seconds from the start of the stream.")
    image: str = Field(description="The JPEG or PNG frame, base64-encoded.")


class StreamFramesIn(BaseModel):
    """JSON body of POST /v1/streams/{id}/frames: one or a few frames, oldest first. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    frames: list[StreamFrameIn] = Field(min_length=1, max_length=MAX_FRAMES_PER_POST)


class StreamFramesAccepted(BaseModel):
    seqs: list[int] = Field(description="Each accepted frame's number in the stream, in the order sent.")
    frames_received: int
    frames_dropped: int = Field(description="Frames dropped so far because the worker was behind (oldest first).")


class StreamDecisionView(BaseModel):
    verdict: Verdict | None = Field(description="null until enough frames with a face were scored.")
    score: float | None
    t_low: float | None
    t_high: float | None
    changes: int = Field(description="How many times the verdict changed (the first decision included).")


class StreamFrameCounts(BaseModel):
    received: int
    scored: int
    with_face: int
    dropped: int


class StreamLinks(BaseModel):
    self_: str = Field(alias="self")
    websocket: str = Field(description="GET with a WebSocket upgrade: send frames, receive decisions.")
    frames: str = Field(description="POST frames over plain HTTP.")
    events: str = Field(description="Server-Sent Events of the decisions.")
    job: str = Field(description="The stream's job; its result once the stream closed.")


class StreamView(BaseModel):
    id: str = Field(description="The stream's id, which is also its job's id.")
    status: StreamStatus
    strategy: dict[str, Any]
    updates: StreamUpdates
    decision: StreamDecisionView
    frames: StreamFrameCounts
    webhook_url: str | None
    metadata: dict[str, Any]
    close_reason: str | None = Field(description="closed, idle (no frame for VERITY_STREAM_IDLE_TIMEOUT_S).")
    created_at: datetime
    closed_at: datetime | None
    links: StreamLinks
