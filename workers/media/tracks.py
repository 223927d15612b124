"""Link face detections across sampled frames into per-person tracks by box overlap (pure numpy)."""

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Box = tuple[float, float, float, float]  # x1, y1, x2, y2
Track = list[tuple[int, int]]  # (frame position, detection index within that frame), in frame order


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two boxes; 0 when either has no area."""
    return float(_iou_matrix(np.array([a], dtype=np.float64), np.array([b], dtype=np.float64))[0, 0])


def link_tracks(faces_per_frame: Sequence[Sequence[Box]], iou_threshold: float = 0.3, max_gap: int = 2) -> list[Track]:
    """Greedy IoU tracking: in each frame, match detections to live tracks, highest IoU first.

    A detection extends the track whose last box it overlaps most (IoU >= `iou_threshold`), each track
    and detection used once per frame; unmatched detections start new tracks. A track survives up to
    `max_gap` consecutive frames without a match (a missed detection, a turned head). Tracks are
    returned longest first, ties in order of first appearance.
    """
    tracks: list[Track] = []
    last_boxes: list[Box] = []
    for position, boxes in enumerate(faces_per_frame):
        live = [t for t, track in enumerate(tracks) if position - track[-1][0] - 1 <= max_gap]
        matched: set[int] = set()
        if live and boxes:
            overlaps = _iou_matrix(_as_array([last_boxes[t] for t in live]), _as_array(boxes))
            used_tracks: set[int] = set()
            # Visit (track, detection) pairs by decreasing IoU so the best overlaps claim each other first.
            for flat in np.argsort(-overlaps, axis=None, kind="stable"):
                row, detection = divmod(int(flat), len(boxes))
                if overlaps[row, detection] < iou_threshold:
                    break
                if row in used_tracks or detection in matched:
                    continue
                track_id = live[row]
                tracks[track_id].append((position, detection))
                last_boxes[track_id] = boxes[detection]
                used_tracks.add(row)
                matched.add(detection)
        for detection, box in enumerate(boxes):
            if detection not in matched:
                tracks.append([(position, detection)])
                last_boxes.append(box)
    return sorted(tracks, key=len, reverse=True)  # sorted() is stable: ties keep first-appearance order


def _as_array(boxes: Sequence[Box]) -> NDArray[np.float64]:
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4)


def _iou_matrix(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of every box in `a` (N x 4) with every box in `b` (M x 4), as N x M."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    result: NDArray[np.float64] = np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)
    return result
