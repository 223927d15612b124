"""Read a video's or an image's metadata without decoding frames, and refuse files over the configured limits.

DESIGN §8: resolution / duration / frame-count limits are checked from container metadata before any
decoding, so a small file that declares a huge frame size or a long duration is refused in milliseconds.
"""

from collections.abc import Set
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.container
import av.video.stream

from core.media.bmff import video_sample_counts
from core.media.container import Sniffed, open_input, sniff_container, sniff_file
from core.media.errors import MediaError
from core.media.image import read_header
from core.settings import accepted_codecs_from_env
from core.vocabulary import MediaKind

# Far above any frame count we accept, yet it bounds what FFmpeg's MP4 index may cost when opening (~14 MB).
MAX_DECLARED_SAMPLES = 1_000_000
# Animations: no frame rate, only a delay per frame, which the probe sums (APNG declares no duration at all).
_TIMED_BY_FRAME = {"gif", "apng"}


@dataclass(frozen=True)
class VideoInfo:
    # As the container declares it, before any display rotation. A stream may still switch to a larger
    # size later (or its codec header may disagree); read_frames has the decoder enforce max_pixels.
    width: int
    height: int
    fps: float  # average frame rate
    frame_count: int  # from the container; estimated as duration x fps when it declares none
    duration_s: float
    # FFmpeg demuxer used: "mp4" (also MOV/3GP), "matroska" (also WebM), "avi", "gif", "apng"; or the format
    # Pillow read: "webp" (animated), or for a still image "jpeg", "png", "webp", "avif"
    container: str
    codec: str  # FFmpeg codec name, e.g. "h264"; for a file Pillow reads, its format
    media: MediaKind = MediaKind.VIDEO  # a still image: one frame, fps and duration 0


@dataclass(frozen=True)
class Limits:
    # 7680 is 8K UHD's long side; either orientation is allowed.
    max_width: int = 7680
    max_height: int = 7680
    # Twice 4K UHD: any 4K video in either orientation passes, 8K (33 Mpx) does not. Face detection and
    # 224-256 px crops gain nothing from more, and decoder memory grows with pixels x reference frames.
    max_pixels: int = 3840 * 2160 * 2
    # Frames are decoded sequentially (seeking per frame was 12-17x slower), so decode time grows with length;
    # ten minutes of 1080p30 is ~1-2 min of CPU decoding.
    max_duration_s: float = 600.0
    # Bounds decoding work when the frame rate is absurd (600 s at 120 fps is 72k frames).
    max_frames: int = 100_000


def probe_video(path: Path, accepted_codecs: Set[str] | None = None) -> VideoInfo:
    """Container and stream metadata of the first video stream, or an image's header; no frame is decoded.

    `accepted_codecs` (canonical FFmpeg names) defaults to VERITY_ACCEPTED_CODECS: the worker probes again with
    the same setting, so a file the API let through is not refused later (or the other way round). Files Pillow
    reads (stills, animated WebP) are accepted by format, not by FFmpeg codec.
    """
    sniffed = sniff_file(path)
    if sniffed.reader == "pillow":
        return _pillow_info(path, sniffed)
    accepted = accepted_codecs_from_env() if accepted_codecs is None else accepted_codecs
    _check_declared_samples(path)
    with open_input(path) as container:
        if not container.streams.video:
            raise MediaError("NO_VIDEO_STREAM", "the file has no video stream")
        stream = container.streams.video[0]
        codec = stream.codec_context.codec.canonical_name
        if codec not in accepted:
            raise MediaError(
                "UNSUPPORTED_MEDIA_TYPE",
                f"video codec {codec!r} is not accepted; accepted codecs: {', '.join(sorted(accepted))}",
            )
        width, height = stream.codec_context.width, stream.codec_context.height
        if not (width and height):
            width, height = _declared_size(path)  # FFmpeg dropped a size over its own limit
        if sniffed.demuxer in _TIMED_BY_FRAME:
            frame_count, duration_s = _frame_timing(container, stream)
            fps = frame_count / duration_s
        else:
            fps = _fps(stream)
            duration_s = _duration_s(container, stream)
            frame_count = stream.frames or round(duration_s * fps)
        _check_not_truncated(path, stream)
        return VideoInfo(width, height, fps, frame_count, duration_s, container.format.name, codec)


def check_limits(info: VideoInfo, limits: Limits) -> None:
    """Raise MediaError(LIMIT_EXCEEDED) naming the first limit `info` breaks."""
    size = f"{info.width}x{info.height}"
    if info.width > limits.max_width or info.height > limits.max_height:
        raise _limit(f"frame size {size} exceeds {limits.max_width}x{limits.max_height}")
    if info.width * info.height > limits.max_pixels:
        raise _limit(f"frame size {size} exceeds {limits.max_pixels} pixels")
    if info.duration_s > limits.max_duration_s:
        raise _limit(f"duration {info.duration_s:.0f} s exceeds {limits.max_duration_s:.0f} s")
    if info.frame_count > limits.max_frames:
        raise _limit(f"{info.frame_count} frames exceed {limits.max_frames}")


def _limit(message: str) -> MediaError:
    return MediaError("LIMIT_EXCEEDED", message)


def _pillow_info(path: Path, sniffed: Sniffed) -> VideoInfo:
    header = read_header(path, sniffed)
    if sniffed.kind is MediaKind.IMAGE:
        return VideoInfo(header.width, header.height, 0.0, 1, 0.0, sniffed.demuxer, header.codec, MediaKind.IMAGE)
    duration_s = sum(header.durations_s)
    count = len(header.durations_s)
    return VideoInfo(header.width, header.height, count / duration_s, count, duration_s, sniffed.demuxer, header.codec)


def _frame_timing(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> tuple[int, float]:
    """Frame count and duration summed from each frame's own delay: an animation has no frame rate, and APNG
    declares neither count nor duration. Demuxing only (no decoding), stopped past any frame-count limit."""
    count, ticks = 0, 0
    for packet in container.demux(stream):
        if packet.size:
            count += 1
            ticks += packet.duration or 0
        if count > MAX_DECLARED_SAMPLES:
            break
    if not count:
        raise MediaError("NO_VIDEO_STREAM", f"the {container.format.name} file holds no frame")
    duration_s = float(ticks * stream.time_base) if stream.time_base else 0.0
    # FFmpeg's gif demuxer already shows a zero delay as 100 ms, as browsers do; APNG's does not.
    return count, duration_s if duration_s > 0 else count * 0.1


def _check_declared_samples(path: Path) -> None:
    try:
        with path.open("rb") as f:
            sniffed = sniff_container(f.read(12))
            is_mp4 = sniffed is not None and sniffed.demuxer == "mp4"
        counts = video_sample_counts(path) if is_mp4 else []
    except OSError:
        return  # open_input reports an unreadable file
    if counts and max(counts) > MAX_DECLARED_SAMPLES:
        raise _limit(f"a video track declares {max(counts)} samples, over {MAX_DECLARED_SAMPLES}")


def _declared_size(path: Path) -> tuple[int, int]:
    with open_input(path, decoders=False) as container:
        ctx = container.streams.video[0].codec_context
        if not (ctx.width and ctx.height):
            raise MediaError("CORRUPT_MEDIA", "the video stream declares no frame size")
        return ctx.width, ctx.height


def _fps(stream: av.video.stream.VideoStream) -> float:
    rate = stream.average_rate or stream.guessed_rate
    if not rate or rate <= 0:
        raise MediaError("CORRUPT_MEDIA", "the video stream declares no frame rate")
    return float(rate)


def _duration_s(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:  # e.g. Matroska keeps the duration only at the segment level
        seconds = float(Fraction(container.duration or 0, av.time_base))
    if seconds <= 0:
        raise MediaError("CORRUPT_MEDIA", "the file declares no duration")
    return seconds


def _check_not_truncated(path: Path, stream: av.video.stream.VideoStream) -> None:
    # MP4 with the index (moov) at the end fails to open when cut short, but a "fast start" MP4 indexes
    # every sample up front: compare where the last indexed sample ends with the file size.
    end = max((entry.pos + entry.size for entry in stream.index_entries), default=0)
    size = path.stat().st_size
    if end > size:
        raise MediaError("CORRUPT_MEDIA", f"the file is truncated: samples run to byte {end}, file has {size}")
