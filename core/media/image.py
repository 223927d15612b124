"""Files Pillow reads (core.media.container): JPEG, PNG, WebP and AVIF stills, and animated WebP, which this
FFmpeg cannot decode. The size comes from the header and is checked before any pixel is decoded; stills are
turned upright by their EXIF orientation.
"""

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from core.media.container import SNIFF_BYTES, Sniffed
from core.media.errors import MediaError
from core.vocabulary import MediaKind

# Browsers show a frame delay of 10 ms or less as 100 ms (old encoders wrote 0 meaning "as fast as possible").
_SHORTEST_DELAY_S = 0.01
_DEFAULT_DELAY_S = 0.1
# Stops the ANMF walk of a hostile file early: far above any frame-count limit (core.media.probe.Limits).
MAX_COUNTED_FRAMES = 1_000_000


@dataclass(frozen=True)
class PillowHeader:
    """What the header says: the canvas size, one display duration per frame (a still: one of 0 s), the format."""

    width: int
    height: int
    durations_s: tuple[float, ...]
    codec: str  # jpeg, png, webp or avif


def read_header(path: Path, sniffed: Sniffed) -> PillowHeader:
    """The size and frame timing, nothing decoded. Pillow's open reads only the header, except WebP's, which
    allocates the whole canvas: its size is read from the RIFF header first and refused over Pillow's own
    decompression-bomb bound before Pillow sees the file."""
    if sniffed.demuxer == "webp":
        width, height = _webp_size(path)
        _check_pixels(width, height, 2 * _pillow_max_pixels())
    with _open(path, sniffed) as image:
        width, height = image.size
    if sniffed.kind is MediaKind.IMAGE:
        return PillowHeader(width, height, (0.0,), sniffed.demuxer)
    durations = tuple(d if d > _SHORTEST_DELAY_S else _DEFAULT_DELAY_S for d in _webp_durations(path))
    if not durations:
        raise MediaError("CORRUPT_MEDIA", "the animated WebP holds no frame")
    return PillowHeader(width, height, durations, sniffed.demuxer)


def read_pixels(
    path: Path, sniffed: Sniffed, wanted: Sequence[int], max_pixels: int
) -> Iterator[tuple[int, NDArray[np.uint8]]]:
    """(index, H x W x 3 RGB) of each wanted frame (sorted, distinct) that decodes, in order; a frame past the
    end or after a break is not yielded. Stills are turned upright by their EXIF orientation."""
    with _open(path, sniffed) as image:
        _check_pixels(*image.size, max_pixels)
        count = getattr(image, "n_frames", 1)
        yielded = 0
        try:
            for index in (i for i in wanted if i < count):
                image.seek(index)  # animated WebP decodes sequentially up to the wanted frame
                upright = ImageOps.exif_transpose(image) if sniffed.kind is MediaKind.IMAGE else image
                yield index, np.asarray(upright.convert("RGB"), dtype=np.uint8)
                yielded += 1
        except (OSError, EOFError, ValueError) as exc:
            # As for videos: a break after some frames leaves the rest missing; none at all is a failure.
            if not yielded:
                raise MediaError("DECODE_FAILED", f"the {sniffed.demuxer} image cannot be decoded ({exc})") from exc


def _pillow_max_pixels() -> int:
    return int(Image.MAX_IMAGE_PIXELS or 0) or 1 << 62


def _open(path: Path, sniffed: Sniffed) -> Image.Image:
    # Pillow's format names are ours upper-cased; naming it keeps Pillow from trying any other decoder.
    try:
        return Image.open(path, formats=[sniffed.demuxer.upper()])
    except Image.DecompressionBombError as exc:
        raise MediaError("LIMIT_EXCEEDED", str(exc)) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # UnidentifiedImageError is an OSError
        raise MediaError("CORRUPT_MEDIA", f"the {sniffed.demuxer} image cannot be parsed ({exc})") from exc


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise MediaError("LIMIT_EXCEEDED", f"image size {width}x{height} exceeds {max_pixels} pixels")


def _webp_size(path: Path) -> tuple[int, int]:
    """The canvas size in a WebP's first chunk: VP8X (extended), VP8L (lossless) or VP8 (lossy key frame)."""
    with path.open("rb") as f:
        head = f.read(SNIFF_BYTES)
    chunk = head[12:16]
    if chunk == b"VP8X" and len(head) >= 30:
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    if chunk == b"VP8L" and len(head) >= 25:
        bits = int.from_bytes(head[21:25], "little")
        return (bits & 0x3FFF) + 1, (bits >> 14 & 0x3FFF) + 1
    if chunk == b"VP8 " and len(head) >= 30:
        return int.from_bytes(head[26:28], "little") & 0x3FFF, int.from_bytes(head[28:30], "little") & 0x3FFF
    raise MediaError("CORRUPT_MEDIA", "the WebP file declares no canvas size")


def _webp_durations(path: Path) -> list[float]:
    """Each ANMF (animation frame) chunk's duration in seconds, walking the RIFF chunk headers only."""
    durations: list[float] = []
    with path.open("rb") as f:
        f.seek(12)
        while len(header := f.read(8)) == 8 and len(durations) < MAX_COUNTED_FRAMES:
            size = int.from_bytes(header[4:], "little")
            skip = size + (size & 1)  # chunks are padded to an even size
            if header[:4] == b"ANMF":
                frame = f.read(16)  # x, y, width - 1, height - 1, duration: 24-bit little-endian each; flags
                durations.append(int.from_bytes(frame[12:15], "little") / 1000)
                skip -= len(frame)
            f.seek(skip, 1)
    return durations
