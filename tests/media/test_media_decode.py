"""read_frames against OpenCV seeking, on real clips, truncated copies and a rotated phone-style video."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from core.media.decode import _presentation_ranks, _skipping, read_frames
from core.media.errors import MediaError
from core.media.probe import probe_video

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
VIDEOS = TESTDATA / "videos"
pytestmark = pytest.mark.skipif(
    not VIDEOS.is_dir(), reason=f"test videos not found in {VIDEOS} (expected ../shared/testdata)"
)


def seek_frame(path: Path, index: int) -> np.ndarray:
    """Frame `index` the slow way: OpenCV seeks to it (it decodes from the previous keyframe)."""
    capture = cv2.VideoCapture(str(path))
    try:
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        ok, bgr = capture.read()
        assert ok, f"OpenCV could not read frame {index} of {path.name}"
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


@pytest.mark.parametrize(
    ("clip", "indices"),
    [
        ("real/dfdc_lynaeydofd.mp4", [0, 7, 150, 299]),  # 1080p H.264 yuv420p, 29.97 fps
        ("real/ffpp_634.mp4", [1, 100, 337]),  # 720p H.264 yuv444p
        ("fake/sberswap_elon.mp4", [0, 33, 65]),  # MPEG-4 Part 2
    ],
)
def test_frames_match_opencv_seeking_pixel_for_pixel(clip: str, indices: list[int]) -> None:
    path = VIDEOS / clip
    frames = read_frames(path, indices)
    info = probe_video(path)
    assert [f.index for f in frames] == indices
    for frame in frames:
        assert frame.image.dtype == np.uint8
        assert frame.image.shape == (info.height, info.width, 3)
        assert frame.timestamp_s == pytest.approx(frame.index / info.fps, abs=0.5 / info.fps)
        # Both use FFmpeg's decoder and swscale's YUV->RGB: identical, not merely close.
        np.testing.assert_array_equal(frame.image, seek_frame(path, frame.index))


def test_indices_unsorted_duplicated_and_past_the_end() -> None:
    path = VIDEOS / "real/sberswap_dance.mp4"  # 66 frames
    frames = read_frames(path, [65, 3, 3, 0, 66, 1000])
    assert [f.index for f in frames] == [0, 3, 65]
    assert read_frames(path, []) == []
    assert read_frames(path, [66, 1000]) == []  # a decodable video, just shorter than asked
    with pytest.raises(ValueError):
        read_frames(path, [-1])


def test_uniform_sample_of_a_1080p_clip() -> None:
    path = VIDEOS / "fake/dfdc_abqwwspghj.mp4"
    indices = np.linspace(0, probe_video(path).frame_count - 1, 32).round().astype(int).tolist()
    frames = read_frames(path, indices)
    assert [f.index for f in frames] == indices
    assert {f.image.shape for f in frames} == {(1080, 1920, 3)}
    assert all(f.image.flags.c_contiguous for f in frames)


def test_truncated_file_yields_the_frames_before_the_cut(tmp_path: Path) -> None:
    source = (VIDEOS / "real/sberswap_dance.mp4").read_bytes()  # fast start: the index survives a cut
    path = tmp_path / "cut.mp4"
    path.write_bytes(source[: len(source) // 2])
    frames = read_frames(path, range(66))
    assert 0 < len(frames) < 66
    assert [f.index for f in frames] == list(range(len(frames)))
    np.testing.assert_array_equal(
        frames[-1].image, read_frames(VIDEOS / "real/sberswap_dance.mp4", [len(frames) - 1])[0].image
    )


def test_truncated_before_any_frame_data_fails_to_decode(tmp_path: Path) -> None:
    source = (VIDEOS / "real/sberswap_dance.mp4").read_bytes()
    path = tmp_path / "header_only.mp4"
    path.write_bytes(source[: source.index(b"mdat") + 64])  # index and a sliver of the first frame
    with pytest.raises(MediaError) as caught:
        read_frames(path, [0, 1, 2])
    assert caught.value.code == "DECODE_FAILED"


def test_display_rotation_is_applied_as_players_do(tmp_path: Path) -> None:
    # A phone-style file: landscape pixels plus "rotate 90° counter-clockwise for display".
    image = np.zeros((64, 96, 3), np.uint8)
    image[:16, :32] = (255, 0, 0)  # a red block marks the top-left corner
    path = tmp_path / "rotated.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25, options={"qp": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 96, 64, "yuv444p"
        stream.set_display_rotation(90)
        out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        out.mux(stream.encode())
    (frame,) = read_frames(path, [0])
    assert frame.image.shape == (96, 64, 3)
    # OpenCV applies the display matrix the way players do.
    np.testing.assert_array_equal(frame.image, seek_frame(path, 0))
    assert np.abs(frame.image.astype(int) - np.rot90(image)).mean() < 1


def sequential_frames(path: Path) -> list[np.ndarray]:
    """Every frame, decoded one after another with nothing skipped: the reference for the skipping decoder."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


@pytest.mark.parametrize("clip", ["fake/ffpp_deepfakes_003_000.mp4", "real/sberswap_orig_webp.mp4"])
def test_skipping_unreferenced_frames_changes_no_pixel(clip: str) -> None:
    path = VIDEOS / clip  # H.264 with B-frames; MPEG-4 Part 2
    reference = sequential_frames(path)
    indices = [*range(0, len(reference), 7), len(reference) - 1]
    frames = read_frames(path, indices)
    assert [f.index for f in frames] == sorted(set(indices))
    for frame in frames:
        np.testing.assert_array_equal(frame.image, reference[frame.index])


def test_unwanted_unreferenced_frames_are_not_decoded() -> None:
    path = VIDEOS / "fake/ffpp_deepfakes_003_000.mp4"
    ranks = _presentation_ranks(path)
    assert ranks is not None and sorted(ranks.values()) == list(range(probe_video(path).frame_count))
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        produced = [index for index, _ in _skipping(container, stream, ranks, {10, 150})]
    assert {10, 150} <= set(produced)
    assert len(produced) < 0.75 * len(ranks)  # the B-frames nothing references were skipped
