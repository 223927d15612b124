"""probe_video / check_limits on the real test clips and on crafted bad files (all refused from metadata)."""

from __future__ import annotations

import csv
import io
import struct
import time
from pathlib import Path
from typing import cast

import av
import av.video.stream
import numpy as np
import pytest

from core.media.decode import read_frames
from core.media.errors import MediaError
from core.media.probe import Limits, VideoInfo, check_limits, probe_video
from core.settings import DEFAULT_ACCEPTED_CODECS, SettingsError, load_settings, parse_codecs

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
MANIFEST = TESTDATA / "manifest.csv"
needs_testdata = pytest.mark.skipif(
    not MANIFEST.is_file(), reason=f"test videos not found in {TESTDATA} (expected ../shared/testdata)"
)


def manifest_rows() -> list[dict[str, str]]:
    if not MANIFEST.is_file():
        return []
    with MANIFEST.open(newline="") as f:
        return list(csv.DictReader(f))


def probe_error(path: Path) -> MediaError:
    """The MediaError probe_video raises for `path`, checking it came from metadata alone (fast)."""
    started = time.perf_counter()
    with pytest.raises(MediaError) as caught:
        check_limits(probe_video(path), Limits())
    # A bound far above the milliseconds it takes, so a loaded CI machine can't flake it; the issue asks
    # for "well under 5 s" — a probe that decoded frames would blow past it on these crafted files.
    assert time.perf_counter() - started < 5.0
    return caught.value


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
        stream = out.add_stream(codec, rate=25, options=options or {})
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


def _box_path(data: bytes | bytearray, names: list[str]) -> list[int]:
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
    boxes = _box_path(data, ["moov", "trak", "mdia", "minf", "stbl", "stsd", "avc1", "avcC"])
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
    tkhd = _box_path(data, ["moov", "trak", "tkhd"])[-1]
    tkhd_end = tkhd + struct.unpack(">I", data[tkhd : tkhd + 4])[0]
    data[tkhd_end - 8 : tkhd_end] = struct.pack(">II", container_side << 16, container_side << 16)  # 16.16
    path.write_bytes(bytes(data))
    return path


# --- Real clips ------------------------------------------------------------------------------------------


@needs_testdata
@pytest.mark.parametrize("row", manifest_rows(), ids=lambda row: Path(row["path"]).name)
def test_real_clip_metadata_matches_manifest(row: dict[str, str]) -> None:
    info = probe_video(TESTDATA / row["path"])
    assert f"{info.width}x{info.height}" == row["resolution"]
    assert info.duration_s == pytest.approx(float(row["duration_s"]), abs=0.02)
    assert info.container == "mp4"
    assert info.codec in {"h264", "mpeg4"}
    # MP4 declares its frame count; it agrees with duration x average rate.
    assert info.frame_count == pytest.approx(info.duration_s * info.fps, abs=1.5)
    check_limits(info, Limits())


# --- Files refused before any decoding -----------------------------------------------------------------


def test_zero_byte_file_is_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    path.touch()
    error = probe_error(path)
    assert error.code == "CORRUPT_MEDIA"
    assert "empty" in error.message


def test_text_named_mp4_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "notes.mp4"
    path.write_text("#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:0\nfile:///etc/passwd\n")  # a playlist posing as .mp4
    assert probe_error(path).code == "UNSUPPORTED_MEDIA_TYPE"


@needs_testdata
def test_truncated_mp4_with_index_at_end_is_corrupt(tmp_path: Path) -> None:
    source = (TESTDATA / "videos/real/ffpp_519.mp4").read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(source[: len(source) // 2])  # the moov index (at the end) is lost
    error = probe_error(path)
    assert error.code == "CORRUPT_MEDIA"
    assert "cannot be parsed" in error.message


@needs_testdata
def test_truncated_fast_start_mp4_is_corrupt(tmp_path: Path) -> None:
    source = (TESTDATA / "videos/real/sberswap_dance.mp4").read_bytes()
    assert source.index(b"moov") < source.index(b"mdat"), "expects a fast-start clip (index first)"
    path = tmp_path / "cut.mp4"
    path.write_bytes(source[: len(source) // 2])  # the index survives but points past the end
    error = probe_error(path)
    assert error.code == "CORRUPT_MEDIA"
    assert "truncated" in error.message


def test_declared_16384_square_is_over_the_limit(tmp_path: Path) -> None:
    path = h264_mp4_declaring(tmp_path / "huge.mp4", sps_side=16384, container_side=16384)
    assert path.stat().st_size < 10_000
    # FFmpeg itself rejects an SPS this large and reports no size; probe falls back to the container's.
    info = probe_video(path)
    assert (info.width, info.height) == (16384, 16384)
    error = probe_error(path)
    assert error.code == "LIMIT_EXCEEDED"
    assert "16384x16384" in error.message


def test_codec_header_larger_than_the_container_is_refused_by_the_decoder(tmp_path: Path) -> None:
    # The container claims 64x64 but the SPS (what the decoder would allocate) says 8192x8192. The probe
    # decodes nothing, so it sees the container's size; the decoder's pixel limit stops the real one.
    path = h264_mp4_declaring(tmp_path / "liar.mp4", sps_side=8192, container_side=64)
    started = time.perf_counter()
    info = probe_video(path)
    assert (info.width, info.height) == (64, 64)
    with pytest.raises(MediaError) as caught:
        read_frames(path, [0, 1])
    assert caught.value.code == "DECODE_FAILED"
    # Without the limit, opening the file alone decoded 8192x8192 frames here (0.25 s, 180 MB); the bound
    # is loose so load can't flake it.
    assert time.perf_counter() - started < 5.0


def test_hours_long_declared_duration_is_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "long.mp4"
    write_video(path, frames=2, pts=[0, 25 * 3 * 3600])  # two frames, three hours apart
    info = probe_video(path)
    assert info.duration_s > 3 * 3600
    error = probe_error(path)
    assert error.code == "LIMIT_EXCEEDED"
    assert "duration" in error.message


def test_audio_only_file_has_no_video_stream(tmp_path: Path) -> None:
    path = tmp_path / "voice.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        for i in range(4):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, i * 1024
            out.mux(stream.encode(frame))
        out.mux(stream.encode())
    assert probe_error(path).code == "NO_VIDEO_STREAM"


def test_codec_outside_the_allow_list_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "lossless.mkv"
    write_video(path, codec="ffv1", fmt="matroska")
    error = probe_error(path)
    assert error.code == "UNSUPPORTED_MEDIA_TYPE"
    assert "'ffv1' is not accepted" in error.message
    assert "accepted codecs: " + ", ".join(sorted(DEFAULT_ACCEPTED_CODECS)) in error.message


# --- Webcam and legacy codecs (issue 13 item 5) ----------------------------------------------------------

# codec as probe_video names it -> the PyAV encoder that writes it. msmpeg4v3 is encoded by FFmpeg's "msmpeg4".
AVI_ENCODERS = {"mjpeg": "mjpeg", "msmpeg4v3": "msmpeg4", "msmpeg4v2": "msmpeg4v2", "mpeg4": "mpeg4"}


def write_avi(path: Path, codec: str, *, width: int = 160, height: int = 120, frames: int = 5) -> Path:
    """A small AVI as a webcam (MJPEG) or an old DivX-era file (MPEG-4 Part 2) writes it, 15 fps."""
    with av.open(str(path), "w", format="avi") as out:
        stream = cast(av.video.stream.VideoStream, out.add_stream(AVI_ENCODERS[codec], rate=15))
        stream.width, stream.height = width, height
        # FFmpeg's MJPEG encoder wants full-range YUV, as webcams write it.
        stream.pix_fmt = "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(frames):
            image = np.full((height, width, 3), 30 * i % 256, np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    return path


@pytest.mark.parametrize("codec", sorted(AVI_ENCODERS))
def test_webcam_and_legacy_avi_codecs_are_accepted_by_default(tmp_path: Path, codec: str) -> None:
    info = probe_video(write_avi(tmp_path / f"{codec}.avi", codec))
    assert (info.container, info.codec, info.width, info.height) == ("avi", codec, 160, 120)
    assert info.frame_count == 5 and info.fps == pytest.approx(15)


def test_the_accepted_codecs_come_from_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    webcam = write_avi(tmp_path / "webcam.avi", "mjpeg")
    monkeypatch.setenv("VERITY_ACCEPTED_CODECS", "h264, hevc")
    error = probe_error(webcam)  # no list passed: the worker's call reads VERITY_ACCEPTED_CODECS
    assert error.code == "UNSUPPORTED_MEDIA_TYPE"
    assert error.message == "video codec 'mjpeg' is not accepted; accepted codecs: h264, hevc"
    assert probe_video(webcam, frozenset({"mjpeg"})).codec == "mjpeg"  # an explicit list wins (the API's)


def test_default_codecs_are_all_decoders_in_this_ffmpeg() -> None:
    assert parse_codecs("X", ",".join(DEFAULT_ACCEPTED_CODECS)) == DEFAULT_ACCEPTED_CODECS
    assert {"mjpeg", "msmpeg4v2", "msmpeg4v3", "mpeg4", "h263", "mpeg1video", "mpeg2video"} <= DEFAULT_ACCEPTED_CODECS
    assert {"prores", "theora", "vp8", "h264", "hevc", "vp9", "av1"} <= DEFAULT_ACCEPTED_CODECS
    assert not {"wmv2", "wmv3"} & DEFAULT_ACCEPTED_CODECS  # they need ASF, which is not an accepted container


def test_the_setting_is_parsed_and_normalised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))  # load_settings may write a webhook secret there
    monkeypatch.setenv("VERITY_ACCEPTED_CODECS", " H264 ,msmpeg4, libdav1d,,")
    # Decoder names copied from `ffmpeg -decoders` become the codec names probe_video compares.
    assert load_settings().accepted_codecs == {"h264", "msmpeg4v3", "av1"}
    monkeypatch.delenv("VERITY_ACCEPTED_CODECS")
    assert load_settings().accepted_codecs == DEFAULT_ACCEPTED_CODECS


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ("h264,h265x", "'h265x' is not a video decoder in this FFmpeg build"),
        ("h264,aac", "'aac' is not a video codec (its type is audio)"),
        (" , ", "must list at least one video codec"),
        ("libx264", "'libx264' is not a video decoder"),  # an encoder's name is not a decoder's
    ],
)
def test_invalid_codec_settings_are_refused_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, raw: str, needle: str
) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    monkeypatch.setenv("VERITY_ACCEPTED_CODECS", raw)
    with pytest.raises(SettingsError, match="VERITY_ACCEPTED_CODECS") as caught:
        load_settings()
    assert needle in str(caught.value)


@pytest.mark.parametrize(("codec", "fmt", "container"), [("libvpx-vp9", "webm", "matroska"), ("mpeg4", "avi", "avi")])
def test_other_accepted_containers(tmp_path: Path, codec: str, fmt: str, container: str) -> None:
    path = tmp_path / f"clip.{fmt}"
    write_video(path, codec=codec, fmt=fmt, frames=10)
    info = probe_video(path)
    assert (info.width, info.height, info.container) == (64, 64, container)
    assert info.fps == pytest.approx(25)
    assert info.frame_count == 10  # Matroska declares no count: estimated from duration x fps


# --- check_limits on its own ---------------------------------------------------------------------------

FULL_HD = VideoInfo(1920, 1080, 30.0, 300, 10.0, "mp4", "h264")


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"width": 7681}, "7681x1080"),
        ({"height": 8000, "width": 1000}, "1000x8000"),
        ({"width": 7680, "height": 4320}, "pixels"),  # 8K UHD: within each side, over the pixel budget
        ({"duration_s": 600.5}, "duration"),
        ({"frame_count": 100_001}, "frames"),
    ],
)
def test_check_limits_names_the_broken_limit(changes: dict[str, float], needle: str) -> None:
    info = VideoInfo(**{**FULL_HD.__dict__, **changes})
    with pytest.raises(MediaError) as caught:
        check_limits(info, Limits())
    assert caught.value.code == "LIMIT_EXCEEDED"
    assert needle in caught.value.message


def test_check_limits_accepts_4k_both_ways_and_custom_limits() -> None:
    check_limits(VideoInfo(3840, 2160, 60.0, 36_000, 600.0, "mp4", "hevc"), Limits())
    check_limits(VideoInfo(2160, 3840, 30.0, 300, 10.0, "mp4", "hevc"), Limits())
    with pytest.raises(MediaError):
        check_limits(FULL_HD, Limits(max_duration_s=5))
