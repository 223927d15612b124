"""Container and codec facts: bits per pixel, keyframe spacing, and whether FFmpeg wrote the file."""

from __future__ import annotations

import math
from pathlib import Path

import av

from core.media.container import open_input
from core.media.errors import MediaError
from core.media.probe import VideoInfo
from core.vocabulary import MediaKind
from workers.forensics.readings import Readings

NAMES = ("quality.bitrate_bpp", "codec.keyframe_interval", "codec.ffmpeg_written")


def measure_codec(path: Path, info: VideoInfo, readings: Readings) -> None:
    """From the demuxed packets alone (nothing decoded): their sizes and keyframe flags."""
    if info.media is MediaKind.IMAGE or info.container in {"webp", "gif", "apng"}:
        for name in NAMES:
            readings.put(name, math.nan, f"a {info.container} file has no video codec stream to measure")
        return
    packets, keyframes, total_bytes = 0, 0, 0
    try:
        with open_input(path, decoders=False) as container:
            encoder = str(container.metadata.get("encoder", ""))
            for packet in container.demux(container.streams.video[0]):
                if packet.size and not packet.is_discard:
                    packets += 1
                    keyframes += int(packet.is_keyframe)
                    total_bytes += packet.size
    except (av.FFmpegError, MediaError) as exc:
        for name in NAMES:
            readings.put(name, math.nan, f"the container could not be demuxed: {exc}")
        return
    pixels = packets * info.width * info.height
    readings.put("quality.bitrate_bpp", total_bytes * 8 / pixels if pixels else math.nan, "no video packet")
    readings.put("codec.keyframe_interval", packets / keyframes if keyframes else math.nan, "no keyframe flagged")
    written = float(encoder.startswith("Lavf")) if encoder else math.nan
    readings.put("codec.ffmpeg_written", written, "the container names no encoder")
