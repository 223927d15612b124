"""The limits of live streams (VERITY_STREAM_*, read in core/settings.py): what the API lets a key open and send,
and how the stream workers share sessions."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StreamLimits:
    max_sessions_per_key: int = 4  # open sessions per API key
    max_frame_bytes: int = 2 * 1024 * 1024  # one JPEG/PNG frame
    max_fps: float = 10.0  # frames a session may send per second
    backlog: int = 8  # frames waiting per session before the oldest waiting one is dropped
    idle_timeout_s: float = 30.0  # silence before a session closes itself
    takeover_s: float = 10.0  # a worker silent this long loses its sessions to another
    worker_sessions: int = 16  # sessions one stream worker holds

    def problem(self) -> str | None:
        """Why these limits are unusable, or None."""
        if not (
            self.max_sessions_per_key >= 1
            and self.max_frame_bytes >= 1024
            and 0 < self.max_fps <= 60
            and self.backlog >= 1
            and 0 < self.idle_timeout_s < float("inf")
            and 0 < self.takeover_s < float("inf")
            and self.worker_sessions >= 1
        ):
            return (
                "VERITY_STREAM_*: sessions per key, backlog and worker sessions must be >= 1, frame bytes >= 1024, "
                "max fps in (0, 60], idle timeout and takeover positive seconds"
            )
        return None
