import pytest

from core.scoring.sampling import fixed_rate_indices, uniform_indices


def test_uniform_short_video_takes_every_frame() -> None:
    assert uniform_indices(10, 30) == list(range(10))
    assert uniform_indices(30, 30) == list(range(30))
    assert uniform_indices(0, 30) == []


def test_uniform_long_video_hand_computed() -> None:
    # step 100/30 = 3.33...: 0, 3.33, 6.67, 10, 13.3, ... , 29 * 3.33 = 96.67
    indices = uniform_indices(100, 30)
    assert indices[:5] == [0, 3, 6, 10, 13]
    assert indices[-1] == 96
    assert len(indices) == 30


@pytest.mark.parametrize("frame_count", [31, 45, 59, 100, 301, 1000, 12_345])
@pytest.mark.parametrize("max_frames", [1, 7, 30, 32])
def test_uniform_matches_seed_sampler_and_is_sorted_unique(frame_count: int, max_frames: int) -> None:
    # The seed's AdaptiveFrameSampler, verbatim apart from names.
    if frame_count <= max_frames:
        seed = list(range(frame_count))
    else:
        step = frame_count / max_frames
        seed = [int(i * step) for i in range(max_frames)]
    indices = uniform_indices(frame_count, max_frames)
    assert indices == seed
    assert indices[0] == 0
    assert indices == sorted(set(indices))
    assert all(0 <= i < frame_count for i in indices)


def test_fixed_rate_option_a_window_of_27() -> None:
    # 30 fps at 2 fps is every 15th frame; the window keeps the first 27 samples (13.5 s).
    assert fixed_rate_indices(1000, 30.0, 2.0, 27) == [15 * k for k in range(27)]


def test_fixed_rate_short_video_fewer_than_window() -> None:
    # 300 frames = 10 s at 30 fps -> 20 samples at 2 fps.
    assert fixed_rate_indices(300, 30.0, 2.0, 27) == [15 * k for k in range(20)]


def test_fixed_rate_no_window_covers_whole_video() -> None:
    assert fixed_rate_indices(60, 30.0, 2.0, None) == [0, 15, 30, 45]


def test_fixed_rate_ntsc_fps() -> None:
    # 29.97 / 2 = 14.985 frames per sample: 0, 14.985, 29.97, 44.955 -> floored.
    assert fixed_rate_indices(50, 29.97, 2.0, None) == [0, 14, 29, 44]


def test_fixed_rate_source_slower_than_rate_gives_every_frame() -> None:
    assert fixed_rate_indices(5, 1.0, 2.0, None) == [0, 1, 2, 3, 4]
    assert fixed_rate_indices(5, 1.0, 2.0, 3) == [0, 1, 2]


def test_fixed_rate_empty_video() -> None:
    assert fixed_rate_indices(0, 30.0, 2.0, 27) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((-1, 30.0, 2.0, 27), "frame_count"),
        ((10, 0.0, 2.0, 27), "fps"),
        ((10, float("nan"), 2.0, 27), "fps"),
        ((10, 30.0, -2.0, 27), "rate_fps"),
        ((10, 30.0, 2.0, 0), "window"),
    ],
)
def test_fixed_rate_rejects_bad_arguments(args: tuple[int, float, float, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fixed_rate_indices(*args)


def test_uniform_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_frames"):
        uniform_indices(10, 0)
    with pytest.raises(ValueError, match="frame_count"):
        uniform_indices(-1, 30)
