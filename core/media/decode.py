"""Decode chosen frames of a video (or the one frame of a still image) as RGB arrays."""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import av
import av.container
import av.video.stream
import numpy as np
from numpy.typing import NDArray

from core.media.container import Sniffed, open_input, sniff_file
from core.media.errors import MediaError
from core.media.image import read_header, read_pixels
from core.media.probe import Limits


@dataclass(frozen=True)
class Frame:
    index: int  # position in decode (presentation) order, 0-based
    timestamp_s: float
    image: NDArray[np.uint8]  # H x W x 3 RGB, upright (the display rotation or EXIF orientation applied)


@dataclass(frozen=True)
class DecodedFrames:
    """What :func:`decode_frames` was asked for and what it could deliver: a shortfall is never silent."""

    frames: list[Frame]  # sorted by index
    requested: list[int]  # the distinct requested indices, sorted
    missing: list[int]  # requested but not returned: past the real end, after a break, or undecodable
    skipped_unreferenced: bool  # whether the skip-unreferenced-frames shortcut produced `frames`


# (demuxer, codec) pairs on which skipping unreferenced frames is proven to return exactly the frames that
# plain sequential decoding does, at the same indices (tests/media/test_media_decode_containers.py, plus
# the real MP4 clips in test_media_decode.py). Elsewhere the shortcut is not used: it numbers frames by
# the demuxed packet timestamps, and AVI has none of its own (it stores decode order, so with B-frames
# the numbering is wrong: H.264 in AVI put 8 of 14 wanted frames under the wrong index in testing; the
# issue's AVI returned 24 of 32). Intra-only codecs (MJPEG, GIF) gain nothing from it anyway: every
# frame is a reference or none is skippable.
SKIP_PROVEN: frozenset[tuple[str, str]] = frozenset(
    {
        ("mp4", "h264"),
        ("mp4", "hevc"),
        ("mp4", "mpeg4"),
        ("matroska", "h264"),
        ("matroska", "hevc"),
        ("matroska", "vp8"),
        ("matroska", "vp9"),
    }
)


def read_frames(path: Path, indices: Sequence[int], *, max_pixels: int = Limits().max_pixels) -> list[Frame]:
    """The frames at `indices` (any order, duplicates ignored), returned sorted by index.

    Only the frames: use :func:`decode_frames` where it matters which requested frames are missing.
    """
    return decode_frames(path, indices, max_pixels=max_pixels).frames


def decode_frames(
    path: Path,
    indices: Sequence[int],
    *,
    max_pixels: int = Limits().max_pixels,
    skip_unreferenced: bool | None = None,
) -> DecodedFrames:
    """The frames at `indices` (any order, duplicates ignored), sorted by index, and which ones are missing.

    Decodes sequentially and converts only the wanted frames, stopping after the last one. PyAV with
    frame threading won over OpenCV grab()/retrieve() on a 10 s 1080p DFDC clip (32 of 300 frames:
    0.9 s vs 2.2 s on 2 cores, pixel-identical output); seeking per frame took 11-15 s. When every packet
    has its own timestamp, a frame's index is known before it is decoded, and the decoder is told to skip
    unwanted frames that no other frame references (about half of an H.264 stream with B-frames): 25-35%
    less decoding on the 1080p test clips, the same pixels (see :func:`_presentation_ranks`). That
    shortcut is used only on the (container, codec) pairs in SKIP_PROVEN (`skip_unreferenced` None);
    False never uses it; True, for tests only, forces it wherever the timestamps allow, even where it is
    wrong (AVI with B-frames: frames under the wrong index). Should it miss a frame the demuxer says
    exists, the video is decoded again without it; misnumbered frames only the allow-list prevents.
    Indices past the real end of the video are missing; a stream that breaks off mid-way (truncated
    file) yields the frames decoded before the break, and DECODE_FAILED only when there were none.
    `max_pixels` makes the decoder itself refuse a frame size over the limit, e.g. a stream whose size
    changes after the metadata was checked.
    """
    wanted = sorted(set(indices))
    if not wanted:
        return DecodedFrames([], [], [], False)
    if wanted[0] < 0:
        raise ValueError(f"frame indices must be >= 0, got {wanted[0]}")
    sniffed = sniff_file(path)
    if sniffed.reader == "pillow":
        frames = _pillow_frames(path, sniffed, wanted, max_pixels)
        got = {f.index for f in frames}
        return DecodedFrames(frames, wanted, [i for i in wanted if i not in got], False)
    # The header check first: an unproven pair (AVI, ...) never pays for the demux pass the ranks need.
    use_shortcut = _skip_proven(path) if skip_unreferenced is None else skip_unreferenced
    ranks = _presentation_ranks(path) if use_shortcut else None
    frames = _decode(path, wanted, max_pixels, ranks)
    got = {f.index for f in frames}
    # Frames the demuxer counted but the shortcut did not deliver: an unproven pair (forced) or a file unlike
    # the ones it was proven on. Correct frames beat a faster decode: decode them all plainly.
    if ranks and any(i not in got and i < len(ranks) for i in wanted):
        ranks = None
        frames = _decode(path, wanted, max_pixels, None)
        got = {f.index for f in frames}
    return DecodedFrames(frames, wanted, [i for i in wanted if i not in got], bool(ranks))


def _pillow_frames(path: Path, sniffed: Sniffed, wanted: list[int], max_pixels: int) -> list[Frame]:
    """A still image (frame 0) or animated WebP frames, each stamped with the delays of the frames before it."""
    starts = np.cumsum((0.0, *read_header(path, sniffed).durations_s))
    return [Frame(i, float(starts[i]), image) for i, image in read_pixels(path, sniffed, wanted, max_pixels)]


def _skip_proven(path: Path) -> bool:
    try:
        with open_input(path, decoders=False) as container:
            if not container.streams.video:
                return False
            codec = container.streams.video[0].codec_context.codec.canonical_name
            return (container.format.name, codec) in SKIP_PROVEN
    except (av.FFmpegError, MediaError):
        return False


def _decode(path: Path, wanted: list[int], max_pixels: int, ranks: dict[int, int] | None) -> list[Frame]:
    """The wanted (sorted, distinct) frames that decode; `ranks`: skip unreferenced frames by them."""
    frames: list[Frame] = []
    decoded = 0
    with open_input(path) as container:
        if not container.streams.video:
            raise MediaError("NO_VIDEO_STREAM", "the file has no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threading: decoding is the bottleneck
        stream.codec_context.options = {"max_pixels": str(max_pixels)}
        # AVI stores no presentation times, only a frame rate: FFmpeg's guessed pts are off by the reorder
        # delay and jitter with B-frames (frames 0, 3, 6, 9 at 0.04, 0.12, 0.20, 0.44 s at 25 fps).
        by_rate = container.format.name == "avi"
        decoded_frames = _skipping(container, stream, ranks, set(wanted)) if ranks else _all(container, stream)
        targets = iter(wanted)
        target = next(targets)
        try:
            for index, frame in decoded_frames:
                decoded += 1
                if index < target:
                    continue
                if index == target:
                    frames.append(Frame(index, _timestamp_s(frame, index, stream, by_rate), _upright_rgb(frame)))
                while target >= 0 and target <= index:
                    target = next(targets, -1)
                if target < 0:
                    break
        except av.FFmpegError as exc:
            if not decoded:
                raise MediaError("DECODE_FAILED", f"no frame could be decoded ({exc.strerror})") from exc
    if not decoded:
        raise MediaError("DECODE_FAILED", "the video stream contains no decodable frame")
    return frames


def _all(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> Iterator[tuple[int, av.VideoFrame]]:
    """Every frame, numbered in the order the decoder returns them."""
    return enumerate(container.decode(stream))


def _presentation_ranks(path: Path) -> dict[int, int] | None:
    """Each video packet's presentation index, keyed by its timestamp, from the demuxer alone (no decoding).

    None when the numbering could disagree with counting decoded frames: a packet without a timestamp,
    two with the same one, or a file that cannot be read to the end (a truncated file is decoded frame
    by frame, which yields exactly the frames before the break). Packets the container marks to be
    discarded (edit lists) produce no frame and are not counted.
    """
    timestamps: list[int] = []
    try:
        with open_input(path) as container:
            if not container.streams.video:
                return None
            for packet in container.demux(container.streams.video[0]):
                if packet.size == 0 or packet.is_discard:
                    continue
                if packet.pts is None:
                    return None
                timestamps.append(packet.pts)
    except (av.FFmpegError, MediaError):
        return None
    if len(set(timestamps)) != len(timestamps):
        return None
    return {pts: rank for rank, pts in enumerate(sorted(timestamps))}


def _skipping(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    ranks: dict[int, int],
    wanted: set[int],
) -> Iterator[tuple[int, av.VideoFrame]]:
    """The decoded frames with their presentation index; unwanted non-reference frames are never decoded.

    skip_frame is read per packet (FFmpeg copies it to each frame thread as the packet is sent), so it
    can change packet by packet: NONREF drops a frame nothing else is predicted from, and only those.
    """
    context = stream.codec_context
    for packet in container.demux(stream):
        if packet.size and not packet.is_discard:
            wanted_packet = packet.pts is not None and ranks.get(packet.pts) in wanted
            context.skip_frame = "DEFAULT" if wanted_packet else "NONREF"
        for frame in context.decode(packet if packet.size else None):
            rank = ranks.get(frame.pts) if frame.pts is not None else None
            if rank is not None:
                yield rank, frame


def _timestamp_s(frame: av.VideoFrame, index: int, stream: av.video.stream.VideoStream, by_rate: bool = False) -> float:
    # From the stream's time base: a frame decoded from a packet sent by hand carries none of its own.
    if not by_rate and frame.pts is not None and stream.time_base:
        return float(frame.pts * stream.time_base)
    rate = stream.average_rate or stream.guessed_rate
    return index / float(rate) if rate else 0.0


def _upright_rgb(frame: av.VideoFrame) -> NDArray[np.uint8]:
    image = cast(NDArray[np.uint8], frame.to_ndarray(format="rgb24"))
    # Phones store portrait video as landscape frames plus a display rotation (counter-clockwise, degrees).
    quarter_turns = round(frame.rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(image, quarter_turns)) if quarter_turns else image
