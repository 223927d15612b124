"""Open an input file safely: sniff its format ourselves and force that demuxer (or hand it to Pillow).

Forcing the demuxer matters: left to guess, FFmpeg opens e.g. an HLS playlist named `.mp4`, which can
reference other files or URLs. Only the formats below are accepted.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import av.container

from core.media.errors import MediaError
from core.vocabulary import MediaKind

# FFmpeg demuxer for each accepted container (DESIGN §8: allow-list of containers).
_MP4 = "mp4"  # also covers MOV / 3GP: one demuxer ("mov,mp4,m4a,3gp,3g2,mj2") handles them all
_MATROSKA = "matroska"  # also WebM
_AVI = "avi"

# Top-level ISO-BMFF boxes a file may start with (ftyp normally; old QuickTime files start with others).
_BMFF_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"}
# HEIF-family brands: stills in an ISO-BMFF box structure, not videos for the MP4 demuxer. AVIF stills are
# accepted (Pillow decodes them here); HEIC is not (Pillow needs the pillow-heif plugin and libheif for it).
_HEIF_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1", b"miaf", b"avif", b"avis"}

# What sniff_container reads: PNG chunks (colour profiles, text) may come before APNG's acTL chunk.
SNIFF_BYTES = 4096
ACCEPTED_FORMATS = "MP4/MOV, WebM/Matroska, AVI, GIF, animated PNG/WebP, or a JPEG, PNG, WebP or AVIF image"

Reader = Literal["ffmpeg", "pillow"]


@dataclass(frozen=True)
class Sniffed:
    """An accepted format: the FFmpeg demuxer to force (or Pillow's format name for a file Pillow reads), the
    MIME type to store the upload under, whether it is a still image or a video, and which library reads it."""

    demuxer: str
    mime_type: str
    kind: MediaKind = MediaKind.VIDEO
    # FFmpeg has no animated WebP decoder here and stills need no demuxer: Pillow reads those.
    reader: Reader = "ffmpeg"


def sniff_container(head: bytes) -> Sniffed | None:
    """The accepted format a file starting with `head` (SNIFF_BYTES of it; ≥ 64 for most) is, or None.

    The API's upload check and the worker's demuxer choice both use this, so a file the API accepts is the
    file the worker opens.
    """
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        compatible = head[16 : int.from_bytes(head[:4], "big")]
        is_avif = head[8:12] == b"avif" or (head[8:12] in {b"mif1", b"miaf"} and b"avif" in compatible)
        return Sniffed("avif", "image/avif", MediaKind.IMAGE, "pillow") if is_avif else None
    if head[4:8] in _BMFF_FIRST_BOXES:
        # Old QuickTime files start with another box than ftyp; "qt  " is QuickTime's major brand.
        quicktime = head[4:8] != b"ftyp" or head[8:12] == b"qt  "
        return Sniffed(_MP4, "video/quicktime" if quicktime else "video/mp4")
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML magic
        return Sniffed(_MATROSKA, "video/webm" if b"webm" in head[:64] else "video/x-matroska")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed(_AVI, "video/x-msvideo")
    if head[:6] in (b"GIF87a", b"GIF89a"):
        # Always a video, one frame or many: FFmpeg's gif demuxer reads the frame delays.
        return Sniffed("gif", "image/gif")
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return Sniffed("apng", "image/apng") if _png_animated(head) else _still("png")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        # VP8X's flags byte has bit 1 set for an animation (ANIM/ANMF chunks follow).
        if head[12:16] == b"VP8X" and len(head) > 20 and head[20] & 0x02:
            return Sniffed("webp", "image/webp", MediaKind.VIDEO, "pillow")
        return _still("webp")
    if head[:3] == b"\xff\xd8\xff":
        return _still("jpeg")
    return None


def _still(name: str) -> Sniffed:
    return Sniffed(name, f"image/{name}", MediaKind.IMAGE, "pillow")


def _png_animated(head: bytes) -> bool:
    """An acTL chunk before the first IDAT makes a PNG an APNG (a chunk is length, type, data, CRC)."""
    pos = 8
    while pos + 8 <= len(head):
        chunk = head[pos + 4 : pos + 8]
        if chunk == b"acTL":
            return True
        if chunk == b"IDAT":
            return False
        pos += 12 + int.from_bytes(head[pos : pos + 4], "big")
    return False


def sniff_file(path: Path) -> Sniffed:
    """The accepted format of the file at `path`; MediaError when it is unreadable, empty or not accepted."""
    try:
        with path.open("rb") as f:
            head = f.read(SNIFF_BYTES)
    except OSError as exc:
        raise MediaError("CORRUPT_MEDIA", f"cannot read the file: {exc.strerror}") from exc
    if not head:
        raise MediaError("CORRUPT_MEDIA", "the file is empty")
    sniffed = sniff_container(head)
    if sniffed is None:
        raise MediaError("UNSUPPORTED_MEDIA_TYPE", f"not an accepted format ({ACCEPTED_FORMATS})")
    return sniffed


# While opening, FFmpeg reads stream info and for that opens each decoder and, for H.264, decodes up to
# ~7 frames (to guess the reordering delay): at an SPS declaring 8192x8192 that took 0.25 s and 180 MB
# here, before any limit could be checked. With skip_frame=all no picture is decoded, so frame sizes are
# the container's; read_frames has the decoder enforce the pixel limit on what the stream really holds.
_NO_PICTURES = {"skip_frame": "all"}
# Opening a decoder, FFmpeg drops a declared size over ~16k x 16k as invalid and reports no size at all;
# with every decoder disabled, the size the container declares survives.
_NO_DECODERS = {"codec_whitelist": "none"}


def open_input(path: Path, *, decoders: bool = True) -> av.container.InputContainer:
    """Open `path` with the demuxer its magic bytes name, decoding nothing; file problems become MediaError.

    `decoders=False` keeps FFmpeg from even opening decoders to read codec headers (see _NO_DECODERS).
    """
    sniffed = sniff_file(path)
    if sniffed.reader != "ffmpeg":
        raise MediaError("UNSUPPORTED_MEDIA_TYPE", f"a {sniffed.demuxer} file is read by Pillow, not FFmpeg")
    try:
        return av.open(
            str(path),
            format=sniffed.demuxer,
            options=_NO_PICTURES if decoders else _NO_DECODERS,
            # Never let the demuxer open anything but this local file (no nested URLs or references).
            container_options={"protocol_whitelist": "file"},
        )
    except av.FFmpegError as exc:
        raise MediaError("CORRUPT_MEDIA", f"the {sniffed.demuxer} container cannot be parsed ({exc.strerror})") from exc
