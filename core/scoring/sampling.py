"""Which frame indices of a video to decode and score."""

import math


def uniform_indices(frame_count: int, max_frames: int) -> list[int]:
    """All frames if there are at most ``max_frames``, else ``max_frames`` evenly spread ones.

    The spread is the seed's AdaptiveFrameSampler (``int(i * frame_count / max_frames)``), done in
    integer arithmetic so no float rounding can repeat or skip an index. It starts at frame 0; the
    step is above 1, so the indices are strictly increasing.
    """
    if frame_count < 0:
        raise ValueError(f"frame_count must be >= 0, got {frame_count}")
    if max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    if frame_count <= max_frames:
        return list(range(frame_count))
    return [i * frame_count // max_frames for i in range(max_frames)]


def fixed_rate_indices(frame_count: int, fps: float, rate_fps: float, window: int | None) -> list[int]:
    """Frames at ``rate_fps`` samples per second from the start, at most ``window`` of them.

    This is the seed's "Option A" (2 fps, window of 27 samples = the first 13.5 s): the detector
    was validated on that many samples, so the window is the first ``window`` samples rather than a
    spread over the whole video. Sample k is the frame on screen at time k / rate_fps. A source
    slower than ``rate_fps`` gives every frame once. Callers with no usable fps from the container
    should fall back to :func:`uniform_indices`.
    """
    if frame_count < 0:
        raise ValueError(f"frame_count must be >= 0, got {frame_count}")
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive finite number, got {fps}")
    if not (math.isfinite(rate_fps) and rate_fps > 0):
        raise ValueError(f"rate_fps must be a positive finite number, got {rate_fps}")
    if window is not None and window < 1:
        raise ValueError(f"window must be >= 1 or None, got {window}")

    # A rate above the source's gives every frame; clamping the step to 1 frame says so and keeps
    # consecutive samples on distinct, increasing frames.
    step = max(fps / rate_fps, 1.0)
    indices: list[int] = []
    k = 0
    while window is None or len(indices) < window:
        # The epsilon keeps exact multiples (e.g. 30 fps / 2 fps * k) from flooring one frame low.
        index = math.floor(k * step + 1e-9)
        if index >= frame_count:
            break
        indices.append(index)
        k += 1
    return indices
