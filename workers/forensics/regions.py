"""The regions the face signals compare: the face box and a ring of its surroundings, as grey pixels.

Pure numpy, so the geometry is unit-tested without OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in full-frame pixels

# The ring reaches this many box sizes around the box centre: the hair, ears, neck and the background nearest
# the face, which a camera records with the same noise, sharpness and motion as the face itself.
RING_SCALE = 1.6
# The face region drops this share of the box on each side: MTCNN's box edges often hold hair or background.
FACE_INSET = 0.1


@dataclass(frozen=True)
class FaceRegion:
    """A window of the grey frame around a face: ``face`` marks the face pixels, ``ring`` the surroundings."""

    grey: NDArray[np.float32]
    face: NDArray[np.bool_]
    ring: NDArray[np.bool_]
    window: tuple[int, int, int, int]  # left, top, right, bottom in full-frame pixels


def grey(image: NDArray[np.uint8]) -> NDArray[np.float32]:
    """ITU-R BT.601 luma of an H x W x 3 RGB image, as float32 in 0..255."""
    weights = np.array([0.299, 0.587, 0.114], np.float32)
    return np.asarray(image.astype(np.float32) @ weights, np.float32)


def _clipped(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> tuple[int, int, int, int]:
    return max(0, round(x1)), max(0, round(y1)), min(width, round(x2)), min(height, round(y2))


def inner_box(box: Box, width: int, height: int, inset: float = FACE_INSET) -> tuple[int, int, int, int]:
    """The face box less ``inset`` of its size on each side, in whole pixels inside the frame."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * inset, (y2 - y1) * inset
    return _clipped(x1 + dx, y1 + dy, x2 - dx, y2 - dy, width, height)


def face_region(image: NDArray[np.uint8], box: Box, scale: float = RING_SCALE) -> FaceRegion | None:
    """The face and its ring in ``image`` (H x W x 3 RGB), grey; None when either is empty (a box off the frame)."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    cx, cy, half_w, half_h = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
    left, top, right, bottom = _clipped(cx - half_w, cy - half_h, cx + half_w, cy + half_h, width, height)
    if right - left < 4 or bottom - top < 4:
        return None
    fx1, fy1, fx2, fy2 = inner_box(box, width, height)
    bx1, by1, bx2, by2 = _clipped(x1, y1, x2, y2, width, height)
    face = np.zeros((bottom - top, right - left), bool)
    face[max(0, fy1 - top) : max(0, fy2 - top), max(0, fx1 - left) : max(0, fx2 - left)] = True
    ring = np.ones_like(face)
    ring[max(0, by1 - top) : max(0, by2 - top), max(0, bx1 - left) : max(0, bx2 - left)] = False
    if not face.any() or not ring.any():
        return None
    return FaceRegion(grey(image[top:bottom, left:right]), face, ring, (left, top, right, bottom))
