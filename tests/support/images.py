"""Still images and animations the tests write with Pillow: a frame with a face from a real clip, saved as
JPEG/PNG/WebP (optionally with an EXIF orientation), animated GIF/PNG/WebP, and images whose header declares a
size they do not hold (decompression bombs)."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import av
import av.video.stream
import numpy as np
from numpy.typing import NDArray
from PIL import Image

# One person facing the camera (FaceForensics++ source clip), for tests that need a face in a still.
FACE_CLIP = "videos/real/ffpp_004.mp4"
EXIF_ORIENTATION = 0x0112
ROTATED_90_CW = 6  # EXIF orientation 6: the stored pixels need a 90° clockwise turn to stand upright


def first_frame(clip: Path) -> NDArray[np.uint8]:
    with av.open(str(clip)) as container:
        frame = next(container.decode(container.streams.video[0]))
        return np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def save_still(image: NDArray[np.uint8], path: Path, *, orientation: int | None = None) -> Path:
    """`image` in the format `path`'s suffix names, with an EXIF orientation tag when given."""
    still = Image.fromarray(image)
    exif = Image.Exif()
    if orientation is not None:
        exif[EXIF_ORIENTATION] = orientation
    still.save(path, exif=exif.tobytes(), lossless=True)  # WebP: lossless; the other formats ignore it
    return path


def save_animation(frames: list[NDArray[np.uint8]], path: Path, *, delay_ms: int = 40) -> Path:
    """An animated GIF, PNG (APNG) or WebP of `frames`, each shown `delay_ms`."""
    images = [Image.fromarray(f) for f in frames]
    images[0].save(path, save_all=True, append_images=images[1:], duration=delay_ms, loop=0, lossless=True)
    return path


def clip_frames(clip: Path, count: int, *, width: int = 320) -> list[NDArray[np.uint8]]:
    """The first `count` frames of `clip`, scaled to `width` (GIF files of full-size frames are slow to write)."""
    frames: list[NDArray[np.uint8]] = []
    with av.open(str(clip)) as container:
        stream: av.video.stream.VideoStream = container.streams.video[0]
        height = round(stream.height * width / stream.width / 2) * 2
        for frame in container.decode(stream):
            frames.append(np.asarray(frame.reformat(width=width, height=height).to_ndarray(format="rgb24"), np.uint8))
            if len(frames) == count:
                break
    return frames


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A valid-looking PNG whose IHDR declares `width` x `height` RGB pixels, with a few bytes of pixel data."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(bytes(4096))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )
    return path


def jpeg_declaring(path: Path, width: int, height: int) -> Path:
    """A small real JPEG with its start-of-frame marker rewritten to declare `width` x `height`."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "grey").save(out, format="JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline SOF0: length (2), precision (1), height (2), width (2)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def webp_declaring(path: Path, width: int, height: int) -> Path:
    """A small real WebP whose extended header (VP8X) declares a `width` x `height` canvas."""
    out = io.BytesIO()
    Image.new("RGB", (16, 16), "grey").save(out, format="WEBP", exif=Image.Exif().tobytes())  # EXIF: VP8X form
    data = bytearray(out.getvalue())
    assert data[12:16] == b"VP8X"
    data[24:30] = (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    path.write_bytes(bytes(data))
    return path
