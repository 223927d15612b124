"""Open an input file with FFmpeg safely: sniff the container ourselves and force that demuxer.

Forcing the demuxer matters: left to guess, FFmpeg opens e.g. an HLS playlist named `.mp4`, which can
reference other files or URLs. Only the three containers below are accepted.
"""

from dataclasses import dataclass
from pathlib import Path

import av
import av.container

from core.media.errors import MediaError

# FFmpeg demuxer for each accepted container (DESIGN §8: allow-list of containers).
_MP4 = "mp4"  # also covers MOV / 3GP: one demuxer ("mov,mp4,m4a,3gp,3g2,mj2") handles them all
_MATROSKA = "matroska"  # also WebM
_AVI = "avi"

# Top-level ISO-BMFF boxes a file may start with (ftyp normally; old QuickTime files start with others).
_BMFF_FIRST_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide"}


@dataclass(frozen=True)
class Sniffed:
    """An accepted container: the FFmpeg demuxer to force and the MIME type to store the upload under."""

    demuxer: str
    mime_type: str


def sniff_container(head: bytes) -> Sniffed | None:
    """The accepted container a file starting with `head` (≥ 12 bytes, 64 to tell WebM) is, or None.

    The API's upload check and the worker's demuxer choice both use this, so a file the API accepts is the
    file the worker opens.
    """
    if head[4:8] in _BMFF_FIRST_BOXES:
        # Old QuickTime files start with another box than ftyp; "qt  " is QuickTime's major brand.
        quicktime = head[4:8] != b"ftyp" or head[8:12] == b"qt  "
        return Sniffed(_MP4, "video/quicktime" if quicktime else "video/mp4")
    if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML magic
        return Sniffed(_MATROSKA, "video/webm" if b"webm" in head[:64] else "video/x-matroska")
    if head[:4] == b"RIFF" and head[8:12] == b"AVI ":
        return Sniffed(_AVI, "video/x-msvideo")
    return None


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
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except OSError as exc:
        raise MediaError("CORRUPT_MEDIA", f"cannot read the file: {exc.strerror}") from exc
    if not head:
        raise MediaError("CORRUPT_MEDIA", "the file is empty")
    sniffed = sniff_container(head)
    if sniffed is None:
        raise MediaError("UNSUPPORTED_MEDIA_TYPE", "not an MP4/MOV, Matroska/WebM or AVI file")
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
