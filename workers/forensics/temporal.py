"""The temporal signals, between each sampled frame and the one right after it: flicker and flow oddity."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from workers.forensics.readings import Readings, Seen
from workers.forensics.regions import FaceRegion, face_region

# Flow is computed on the face window shrunk to this long side: enough for the motion of a face as a whole.
FLOW_SIDE = 128
# Below this motion (full-frame px per frame) of both the face and its ring, there is no motion to compare.
MIN_MOTION_PX = 1.0


def luminance_jump(before: FaceRegion, after: FaceRegion) -> float:
    """|change of the face's mean luma - change of its ring's|, in grey levels: lighting that changes the whole
    scene cancels out, a face that brightens or darkens on its own does not."""
    face = float(after.grey[after.face].mean() - before.grey[before.face].mean())
    ring = float(after.grey[after.ring].mean() - before.grey[before.ring].mean())
    return abs(face - ring)


def motion_oddity(before: FaceRegion, after: FaceRegion) -> float:
    """|face flow - ring flow| / the larger of the two (Farneback, medians): 0 when the face moves with its
    surroundings, about 1 when one moves and the other does not; NaN without motion."""
    scale = min(1.0, FLOW_SIDE / max(before.grey.shape))
    size = (max(8, round(before.grey.shape[1] * scale)), max(8, round(before.grey.shape[0] * scale)))
    # Farneback takes 8-bit grey only.
    a, b = (cv2.resize(r.grey, size, interpolation=cv2.INTER_AREA).round().astype(np.uint8) for r in (before, after))
    flow = np.zeros((size[1], size[0], 2), np.float32)
    flow = np.asarray(cv2.calcOpticalFlowFarneback(a, b, flow, 0.5, 3, 15, 3, 5, 1.2, 0), np.float32)
    face = _median_flow(flow, before.face, size) / scale
    ring = _median_flow(flow, before.ring, size) / scale
    largest = max(float(np.hypot(*face)), float(np.hypot(*ring)))
    if largest < MIN_MOTION_PX:
        return math.nan
    return float(np.hypot(*(face - ring))) / largest


def _median_flow(flow: NDArray[np.float32], mask: NDArray[np.bool_], size: tuple[int, int]) -> NDArray[np.float64]:
    small = cv2.resize(mask.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    vectors = flow[small] if small.any() else flow.reshape(-1, 2)
    return np.asarray(np.median(vectors, axis=0), np.float64)


def measure_temporal(faces_seen: Sequence[Seen], readings: Readings) -> None:
    jumps: list[tuple[int, float]] = []
    oddities: list[tuple[int, float]] = []
    for s in faces_seen:
        following = s.sighting.next_frame
        after = None if following is None else face_region(following.image, s.sighting.box)
        if after is None or after.grey.shape != s.region.grey.shape:
            continue
        jumps.append((s.track_id, luminance_jump(s.region, after)))
        oddities.append((s.track_id, motion_oddity(s.region, after)))
    no_pair = "no face with the frame after it decoded (a still image, or too few frames)"
    readings.per_track("forensics.flicker", jumps, no_pair)
    readings.per_track("temporal.flow_oddity", oddities, no_pair if not oddities else "no motion")
