"""Synthetic videos the media and API tests write: tiny H.264 MP4s, legacy AVIs, and MP4s crafted to declare
sizes they do not hold. Test clips from ../shared/testdata are named here too."""

from __future__ import annotations

import io
import struct
from functools import cache
from pathlib import Path
from typing import cast

import av
import av.video.stream
import numpy as np
from numpy.typing import NDArray

# A 2.6 s real clip from ../shared/testdata (tests.conftest.shared_file) for tests that run the whole pipeline.
CLIP = "videos/fake/sberswap_elon.mp4"
# The first bytes of an MP4: enough for the upload sniffer, not a video.
MP4_HEAD = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom"


@cache
def tiny_mp4(shade: int = 0) -> bytes:
    """A valid two-frame 64x64 H.264 MP4; a different shade gives a different file."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25, options={"preset": "ultrafast"})
        stream.width = stream.height = 64
        stream.pix_fmt = "yuv420p"
        for _ in range(2):
            frame = av.VideoFrame.from_ndarray(np.full((64, 64, 3), shade % 256, np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    return buffer.getvalue()


def write_video(
    path: Path | io.BytesIO,
    *,
    codec: str = "libx264",
    fmt: str = "mp4",
    size: int = 64,
    frames: int = 4,
    pts: list[int] | None = None,
    options: dict[str, str] | None = None,
) -> None:
    """A tiny synthetic video (flat grey frames, 25 fps)."""
    target = str(path) if isinstance(path, Path) else path
    with av.open(target, "w", format=fmt) as out:
        stream = cast(av.video.stream.VideoStream, out.add_stream(codec, rate=25, options=options or {}))
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((size, size, 3), 20 * i % 256, np.uint8), format="rgb24")
            if pts is not None:
                frame.pts = pts[i]
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


# --- Crafting an MP4 whose H.264 stream declares a huge frame size --------------------------------------
# Encoding a real 16384x16384 frame would need gigabytes, so encode 64x64 and rewrite the sizes the file
# declares: the SPS inside avcC (what the decoder would allocate) and the avc1 / tkhd boxes (the container).


def _ue(value: int) -> str:
    """Exp-Golomb code of `value`, as a bit string."""
    code = bin(value + 1)[2:]
    return "0" * (len(code) - 1) + code


def _rewrite_sps_size(sps: bytes, side: int) -> bytes:
    """A baseline-profile SPS NAL with pic_width_in_mbs / pic_height_in_map_units set for side x side."""
    bits = "".join(f"{b:08b}" for b in sps.replace(b"\x00\x00\x03", b"\x00\x00"))
    pos = 0

    def u(n: int) -> int:
        nonlocal pos
        pos += n
        return int(bits[pos - n : pos] or "0", 2)

    def ue() -> int:
        zeros = bits.index("1", pos) - pos
        u(zeros)
        return u(zeros + 1) - 1

    u(8)  # NAL header
    assert u(8) == 66, "expects a baseline-profile SPS (no chroma / scaling-matrix fields)"
    u(16)  # constraint flags, level
    ue()  # seq_parameter_set_id
    ue()  # log2_max_frame_num_minus4
    poc_type = ue()
    assert poc_type in (0, 2)
    if poc_type == 0:
        ue()  # log2_max_pic_order_cnt_lsb_minus4
    ue()  # max_num_ref_frames
    u(1)  # gaps_in_frame_num_value_allowed_flag
    start = pos
    ue()  # pic_width_in_mbs_minus1
    ue()  # pic_height_in_map_units_minus1 (frame_mbs_only: map units are macroblocks)
    mbs = _ue(side // 16 - 1)
    new = bits[:start] + mbs + mbs + bits[pos:]
    new = new[: new.rindex("1") + 1]  # drop the old byte alignment after the stop bit, then realign
    new += "0" * (-len(new) % 8)
    rbsp = int(new, 2).to_bytes(len(new) // 8, "big")
    out = bytearray()  # re-insert emulation-prevention bytes
    for byte in rbsp:
        if len(out) >= 2 and out[-2:] == b"\x00\x00" and byte <= 3:
            out.append(3)
        out.append(byte)
    return bytes(out)


def box_path(data: bytes | bytearray, names: list[str]) -> list[int]:
    """Offsets of nested boxes `names` (e.g. moov/trak/tkhd), outermost first."""
    header_extra = {"stsd": 8, "avc1": 78}  # bytes between these boxes' headers and their children
    offsets: list[int] = []
    start, end = 0, len(data)
    for name in names:
        offset = start
        while True:
            size, kind = struct.unpack(">I4s", data[offset : offset + 8])
            if kind == name.encode():
                break
            offset += size
            assert offset < end, f"box {name} not found"
        offsets.append(offset)
        start, end = offset + 8 + header_extra.get(name, 0), offset + size
    return offsets


def h264_mp4_declaring(path: Path, *, sps_side: int, container_side: int) -> Path:
    buffer = io.BytesIO()
    write_video(buffer, frames=2, options={"profile": "baseline", "preset": "ultrafast"})
    data = bytearray(buffer.getvalue())
    assert data.index(b"mdat") < data.index(b"moov"), "moov must follow mdat so sample offsets stay valid"
    boxes = box_path(data, ["moov", "trak", "mdia", "minf", "stbl", "stsd", "avc1", "avcC"])
    avcc = boxes[-1]
    avcc_size = struct.unpack(">I", data[avcc : avcc + 4])[0]
    body = data[avcc + 8 : avcc + avcc_size]
    assert body[5] & 0x1F == 1, "expects one SPS"
    sps_len = struct.unpack(">H", body[6:8])[0]
    sps = _rewrite_sps_size(bytes(body[8 : 8 + sps_len]), sps_side)
    new_body = body[:6] + struct.pack(">H", len(sps)) + sps + body[8 + sps_len :]
    data[avcc + 8 : avcc + avcc_size] = new_body
    for offset in boxes:  # the SPS grew: so did every box around it
        (size,) = struct.unpack(">I", data[offset : offset + 4])
        data[offset : offset + 4] = struct.pack(">I", size + len(new_body) - len(body))
    avc1 = boxes[-2]
    data[avc1 + 32 : avc1 + 36] = struct.pack(">HH", container_side, container_side)  # sample entry w, h
    tkhd = box_path(data, ["moov", "trak", "tkhd"])[-1]
    tkhd_end = tkhd + struct.unpack(">I", data[tkhd : tkhd + 4])[0]
    data[tkhd_end - 8 : tkhd_end] = struct.pack(">II", container_side << 16, container_side << 16)  # 16.16
    path.write_bytes(bytes(data))
    return path


# codec as probe_video names it -> the PyAV encoder that writes it. msmpeg4v3 is encoded by FFmpeg's "msmpeg4".
AVI_ENCODERS = {"mjpeg": "mjpeg", "msmpeg4v3": "msmpeg4", "msmpeg4v2": "msmpeg4v2", "mpeg4": "mpeg4"}


def write_avi(
    path: Path,
    codec: str,
    *,
    width: int = 160,
    height: int = 120,
    frames: int = 5,
    images: list[NDArray[np.uint8]] | None = None,
) -> Path:
    """A small AVI as a webcam (MJPEG) or an old DivX-era file (MPEG-4 Part 2) writes it, 15 fps: of ``images``
    (RGB, all one size) when given, else ``frames`` flat grey frames."""
    if images is not None:
        height, width = images[0].shape[:2]
    pictures = images or [np.full((height, width, 3), 30 * i % 256, np.uint8) for i in range(frames)]
    with av.open(str(path), "w", format="avi") as out:
        stream = cast(av.video.stream.VideoStream, out.add_stream(AVI_ENCODERS[codec], rate=15))
        stream.width, stream.height = width, height
        # FFmpeg's MJPEG encoder wants full-range YUV, as webcams write it.
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for image in pictures:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path
