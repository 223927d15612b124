"""Still images and animations (issue 13 items 1 and 4), on files written here with Pillow: one sniffer for every
format, the limits refused from the header before any decoding, EXIF orientation applied, animation timing read
from each frame's own delay."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from core.media.container import SNIFF_BYTES, sniff_container, sniff_file
from core.media.decode import decode_frames
from core.media.errors import MediaError
from core.media.probe import Limits, check_limits, probe_video
from core.vocabulary import MediaKind
from tests.conftest import shared_file
from tests.support.images import (
    FACE_CLIP,
    ROTATED_90_CW,
    clip_frames,
    jpeg_declaring,
    png_declaring,
    save_animation,
    save_still,
    webp_declaring,
)


@pytest.fixture(scope="module")
def face() -> NDArray[np.uint8]:
    return clip_frames(shared_file(FACE_CLIP), 1)[0]


def _pattern(shade: int) -> NDArray[np.uint8]:
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, : 8 + shade * 4] = (255, 255 - shade * 20, 0)
    return image


@pytest.mark.parametrize(
    ("suffix", "demuxer", "mime", "kind"),
    [
        ("jpg", "jpeg", "image/jpeg", MediaKind.IMAGE),
        ("png", "png", "image/png", MediaKind.IMAGE),
        ("webp", "webp", "image/webp", MediaKind.IMAGE),
        ("avif", "avif", "image/avif", MediaKind.IMAGE),
    ],
)
def test_stills_are_sniffed_as_images(tmp_path: Path, suffix: str, demuxer: str, mime: str, kind: MediaKind) -> None:
    sniffed = sniff_file(save_still(_pattern(1), tmp_path / f"still.{suffix}"))
    assert (sniffed.demuxer, sniffed.mime_type, sniffed.kind, sniffed.reader) == (demuxer, mime, kind, "pillow")


@pytest.mark.parametrize(
    ("suffix", "demuxer", "mime", "reader"),
    [
        ("gif", "gif", "image/gif", "ffmpeg"),
        ("png", "apng", "image/apng", "ffmpeg"),
        ("webp", "webp", "image/webp", "pillow"),
    ],
)
def test_animations_are_sniffed_as_videos(tmp_path: Path, suffix: str, demuxer: str, mime: str, reader: str) -> None:
    path = save_animation([_pattern(i) for i in range(3)], tmp_path / f"anim.{suffix}")
    sniffed = sniff_file(path)
    assert (sniffed.demuxer, sniffed.mime_type, sniffed.kind, sniffed.reader) == (
        demuxer,
        mime,
        MediaKind.VIDEO,
        reader,
    )


@pytest.mark.parametrize("brand", [b"heic", b"mif1", b"avis"])
def test_heif_stills_are_not_taken_for_mp4(brand: bytes) -> None:
    # The same ISO-BMFF boxes as MP4: without the brand check HEIC would reach the MP4 demuxer.
    assert sniff_container(b"\x00\x00\x00\x18ftyp" + brand + b"\x00\x00\x00\x00mif1heic") is None
    assert sniff_container(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom") is not None


def test_an_apng_is_told_from_a_png_past_other_chunks(tmp_path: Path) -> None:
    path = save_animation([_pattern(i) for i in range(2)], tmp_path / "anim.png")
    head = path.read_bytes()[:SNIFF_BYTES]
    assert head.index(b"acTL") > 12  # after IHDR: the sniffer walks chunks, not a fixed offset
    assert sniff_container(head) is not None and sniff_container(head[:12]) is not None


@pytest.mark.parametrize("suffix", ["jpg", "png", "webp"])
def test_a_still_is_one_frame_with_no_rate_or_duration(face: NDArray[np.uint8], tmp_path: Path, suffix: str) -> None:
    path = save_still(face, tmp_path / f"face.{suffix}")
    info = probe_video(path)
    height, width = face.shape[:2]
    assert (info.width, info.height, info.frame_count, info.fps, info.duration_s) == (width, height, 1, 0.0, 0.0)
    assert info.media is MediaKind.IMAGE
    check_limits(info, Limits())
    decoded = decode_frames(path, [0, 5])
    assert [f.index for f in decoded.frames] == [0] and decoded.missing == [5]
    assert decoded.frames[0].image.shape == face.shape and decoded.frames[0].timestamp_s == 0.0
    if suffix != "jpg":  # lossless
        np.testing.assert_array_equal(decoded.frames[0].image, face)


@pytest.mark.parametrize("suffix", ["jpg", "png", "webp"])
def test_exif_orientation_is_applied(face: NDArray[np.uint8], tmp_path: Path, suffix: str) -> None:
    # Stored as a phone does: the sensor's pixels, and a tag saying they need a quarter turn clockwise.
    path = save_still(face, tmp_path / f"turned.{suffix}", orientation=ROTATED_90_CW)
    image = decode_frames(path, [0]).frames[0].image
    upright, wrong_way = np.rot90(face, -1), np.rot90(face, 1)
    assert image.shape == upright.shape

    def error(expected: NDArray[np.uint8]) -> float:
        return float(np.abs(image.astype(int) - expected).mean())

    assert error(upright) < 8 and error(upright) * 4 < error(wrong_way)  # JPEG is lossy; a wrong turn is far off


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("png 100000x100000", lambda p: png_declaring(p / "bomb.png", 100_000, 100_000)),
        ("png 5000x5000", lambda p: png_declaring(p / "big.png", 5000, 5000)),
        ("jpeg 65000x65000", lambda p: jpeg_declaring(p / "bomb.jpg", 65_000, 65_000)),
        ("jpeg 4100x4100", lambda p: jpeg_declaring(p / "big.jpg", 4100, 4100)),
        ("webp 16000x16000", lambda p: webp_declaring(p / "bomb.webp", 16_000, 16_000)),
    ],
)
def test_an_image_declaring_a_huge_size_is_refused_from_its_header(tmp_path: Path, name: str, write: object) -> None:
    assert callable(write)
    path: Path = write(tmp_path)
    assert path.stat().st_size < 20_000
    start = time.perf_counter()
    with pytest.raises(MediaError) as refused:
        check_limits(probe_video(path), Limits())
    assert refused.value.code == "LIMIT_EXCEEDED"
    # Decoding 16 Mpx would take far longer; the header alone takes milliseconds (the API test bounds memory).
    assert time.perf_counter() - start < 0.5
    with pytest.raises(MediaError, match="LIMIT_EXCEEDED"):  # the decoder checks again, e.g. on a direct call
        decode_frames(path, [0], max_pixels=Limits().max_pixels)


@pytest.mark.parametrize("suffix", ["gif", "png", "webp"])
def test_animation_timing_comes_from_the_frame_delays(tmp_path: Path, suffix: str) -> None:
    path = save_animation([_pattern(i) for i in range(6)], tmp_path / f"anim.{suffix}", delay_ms=250)
    info = probe_video(path)
    assert (info.media, info.frame_count) == (MediaKind.VIDEO, 6)
    assert info.duration_s == pytest.approx(1.5) and info.fps == pytest.approx(4.0)
    decoded = decode_frames(path, [0, 2, 5, 9])
    assert [f.index for f in decoded.frames] == [0, 2, 5] and decoded.missing == [9]
    assert [f.timestamp_s for f in decoded.frames] == pytest.approx([0.0, 0.5, 1.25])
    for frame in decoded.frames:
        np.testing.assert_allclose(frame.image, _pattern(frame.index), atol=8)  # GIF quantises the palette


@pytest.mark.parametrize(
    "content", [b"GIF89a" + bytes(30), b"\x89PNG\r\n\x1a\n" + bytes(40), b"\xff\xd8\xff" + bytes(40)]
)
def test_a_broken_image_is_corrupt_media_not_a_crash(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken"
    path.write_bytes(content)
    with pytest.raises(MediaError) as refused:
        probe_video(path)
    assert refused.value.code in {"CORRUPT_MEDIA", "NO_VIDEO_STREAM"}
