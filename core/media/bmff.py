"""Declared sample counts of an MP4/MOV file's video tracks, read from box headers without FFmpeg.

FFmpeg's mov demuxer sizes its sample index from the counts a file declares: an MP4 of a few kB whose ``stsz``
box declares 50 million video samples took 1 s and ~600 MB of memory just to open. probe_video reads the
counts here first and refuses such a file before FFmpeg sees it.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

# Boxes on the way from the top level down to a track's sample table.
_PATH_TO_STBL = (b"mdia", b"minf", b"stbl")


def _boxes(f: BinaryIO, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, payload start, box end) of each box in [start, end); stops at the first malformed header."""
    offset = start
    while offset + 8 <= end:
        f.seek(offset)
        header = f.read(8)
        if len(header) < 8:
            return
        size, kind = struct.unpack(">I4s", header)
        payload = offset + 8
        if size == 1:  # 64-bit size follows the type
            large = f.read(8)
            if len(large) < 8:
                return
            size = struct.unpack(">Q", large)[0]
            payload += 8
        elif size == 0:  # extends to the end of the enclosing box
            size = end - offset
        if size < payload - offset:
            return
        box_end = min(offset + size, end)
        yield kind, payload, box_end
        offset = offset + size


def _child(f: BinaryIO, start: int, end: int, kind: bytes) -> tuple[int, int] | None:
    return next(((s, e) for k, s, e in _boxes(f, start, end) if k == kind), None)


def _read(f: BinaryIO, offset: int, size: int) -> bytes:
    f.seek(offset)
    return f.read(size)


def video_sample_counts(path: Path) -> list[int]:
    """The sample count each video track's stsz / stz2 box declares (empty if the file has no moov)."""
    counts: list[int] = []
    with path.open("rb") as f:
        end = f.seek(0, 2)
        moov = _child(f, 0, end, b"moov")
        if moov is None:
            return counts
        for kind, trak_start, trak_end in _boxes(f, *moov):
            if kind != b"trak":
                continue
            mdia = _child(f, trak_start, trak_end, b"mdia")
            hdlr = mdia and _child(f, *mdia, b"hdlr")
            # hdlr payload: version/flags (4), pre_defined (4), handler_type (4).
            if not hdlr or _read(f, hdlr[0] + 8, 4) != b"vide":
                continue
            box: tuple[int, int] | None = (trak_start, trak_end)
            for name in _PATH_TO_STBL:
                box = box and _child(f, *box, name)
            if not box:
                continue
            for name, start, _ in _boxes(f, *box):
                # stsz: version/flags (4), sample_size (4), sample_count (4);
                # stz2: version/flags (4), reserved + field_size (4), sample_count (4).
                if name in (b"stsz", b"stz2"):
                    raw = _read(f, start + 8, 4)
                    if len(raw) == 4:
                        counts.append(struct.unpack(">I", raw)[0])
    return counts
