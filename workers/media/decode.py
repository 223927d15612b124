"""Decode chosen frames of a video as RGB arrays."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import av.video.stream
import numpy as np
from numpy.typing import NDArray

from db.media.container import open_input
from db.media.errors import MediaError
from db.media.probe import Limits


@dataclass(frozen=True)
class Frame:
    index: int  # position in decode (presentation) order, 0-based
    timestamp_s: float
    image: NDArray[np.uint8]  # H x W x 3 RGB, upright (the container's display rotation applied)


def read_frames(path: Path, indices: Sequence[int], *, max_pixels: int = Limits().max_pixels) -> list[Frame]:
    """The frames at `indices` (any order, duplicates ignored), returned sorted by index.

    Decodes sequentially and converts only the wanted frames, stopping after the last one. PyAV with
    frame threading won over OpenCV grab()/retrieve() on a 10 s 1080p DFDC clip (32 of 300 frames:
    0.9 s vs 2.2 s on 2 cores, pixel-identical output); seeking per frame took 11-15 s.
    Indices past the real end of the video are skipped; a stream that breaks off mid-way (truncated
    file) yields the frames decoded before the break, and DECODE_FAILED only when there were none.
    `max_pixels` makes the decoder itself refuse a frame size over the limit, e.g. a stream whose size
    changes after the metadata was checked.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return []
    if wanted[0] < 0:
        raise ValueError(f"frame indices must be >= 0, got {wanted[0]}")
    frames: list[Frame] = []
    decoded = 0
    with open_input(path) as container:
        if not container.streams.video:
            raise MediaError("NO_VIDEO_STREAM", "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading: decoding is the bottleneck
        stream.codec_context.options = {"max_pixels": str(max_pixels)}
        targets = iter(wanted)
        target = next(targets)
        try:
            for frame in container.decode(stream):
                index, decoded = decoded, decoded + 1
                if index < target:
                    continue
                frames.append(Frame(index, _timestamp_s(frame, index, stream), _upright_rgb(frame)))
                target = next(targets, -1)
                if target < 0:
                    break
        except av.FFmpegError as exc:
            if not decoded:
                raise MediaError("DECODE_FAILED", f"no frame could be decoded ({exc.strerror})") from exc
    if not decoded:
        raise MediaError("DECODE_FAILED", "the video stream contains no decodable frame")
    return frames


def _timestamp_s(frame: av.VideoFrame, index: int, stream: av.video.stream.VideoStream) -> float:
    if frame.time is not None:
        return frame.time
    rate = stream.average_rate or stream.guessed_rate
    return index / float(rate) if rate else 0.0


def _upright_rgb(frame: av.VideoFrame) -> NDArray[np.uint8]:
    image = cast(NDArray[np.uint8], frame.to_ndarray(format="rgb24"))
    # Phones store portrait video as landscape frames plus a display rotation (counter-clockwise, degrees).
    quarter_turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image
