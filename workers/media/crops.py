"""Cut face crops from a frame by a detector's crop convention (:class:`core.crop_spec.CropSpec`)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import cast

import cv2
import numpy as np
from numpy.typing import NDArray
from PIL import Image

from core.crop_spec import CropSpec, Interpolation

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in full-frame pixels
CropKey = tuple[str, int]  # (convention name, crop size)

_CV2_FLAGS = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC}


def cut_crop(image: NDArray[np.uint8], box: Box, spec: CropSpec, size: int) -> NDArray[np.uint8]:
    """The size x size x 3 crop of `box` in `image` (H x W x 3 RGB uint8) by `spec`.

    The box is MTCNN's, in full-frame pixels; it may reach outside the frame, but not lie wholly outside it.
    """
    height, width = image.shape[:2]
    x1, y1, x2, y2 = box
    if x2 <= 0 or y2 <= 0 or x1 >= width or y1 >= height:
        raise ValueError(f"box {box} lies outside the {width}x{height} frame")
    left, top, right, bottom = _inside(_window(box, spec), spec, width, height)
    if right <= left or bottom <= top:
        raise ValueError(f"crop {spec.name!r} of box {box} lies outside the {width}x{height} frame")
    crop = image[top:bottom, left:right]
    if spec.fit == "stretch":
        return _resize(crop, size, size, spec.interpolation)
    crop_h, crop_w = crop.shape[:2]
    scale = size / max(crop_h, crop_w)
    # The longer side becomes exactly `size`; the shorter is truncated, at least 1 px.
    out_w = size if crop_w >= crop_h else max(1, int(crop_w * scale))
    out_h = size if crop_h >= crop_w else max(1, int(crop_h * scale))
    padded = np.zeros((size, size, 3), np.uint8)
    pad_top, pad_left = (size - out_h) // 2, (size - out_w) // 2
    padded[pad_top : pad_top + out_h, pad_left : pad_left + out_w] = _resize(crop, out_w, out_h, spec.interpolation)
    return padded


def cut_crops(
    faces: Sequence[tuple[NDArray[np.uint8], Box]], wanted: Iterable[tuple[CropSpec, int]]
) -> dict[CropKey, NDArray[np.uint8]]:
    """Every face (frame, box) cut once per distinct (convention, size): N x size x size x 3 arrays keyed by
    (convention name, size)."""
    specs: dict[CropKey, CropSpec] = {}
    for spec, size in wanted:
        if specs.setdefault((spec.name, size), spec) != spec:
            raise ValueError(f"two different crop conventions are named {spec.name!r}")
    return {
        (name, size): (
            np.stack([cut_crop(image, box, spec, size) for image, box in faces])
            if faces
            else np.empty((0, size, size, 3), np.uint8)
        )
        for (name, size), spec in specs.items()
    }


def _window(box: Box, spec: CropSpec) -> tuple[int, int, int, int]:
    """left, top, right (exclusive), bottom (exclusive) before the frame border is considered."""
    x1, y1, x2, y2 = box
    if spec.margin == "square_scale":
        side = round(spec.amount * max(x2 - x1, y2 - y1))
        left = round((x1 + x2) / 2 - side / 2)
        top = round((y1 + y2) / 2 - side / 2)
        return left, top, left + side, top + side
    if spec.margin == "pixels":
        grow_x = grow_y = spec.amount
    else:
        grow_x, grow_y = spec.amount * (x2 - x1), spec.amount * (y2 - y1)
    return math.floor(x1 - grow_x), math.floor(y1 - grow_y), math.ceil(x2 + grow_x), math.ceil(y2 + grow_y)


def _inside(window: tuple[int, int, int, int], spec: CropSpec, width: int, height: int) -> tuple[int, int, int, int]:
    left, top, right, bottom = window
    if spec.border == "clip":
        return max(left, 0), max(top, 0), min(right, width), min(bottom, height)
    if spec.border == "shift":
        left, right = _shifted(left, right, width)
        top, bottom = _shifted(top, bottom, height)
        return left, top, right, bottom
    # "square": FF++ keeps the side past the top/left edge and cuts it to end at the bottom/right one.
    side = right - left
    left, top = max(left, 0), max(top, 0)
    side = min(side, width - left, height - top)
    return left, top, left + side, top + side


def _shifted(start: int, end: int, limit: int) -> tuple[int, int]:
    length = end - start
    if length >= limit:
        return 0, limit
    start = min(max(start, 0), limit - length)
    return start, start + length


def _resize(crop: NDArray[np.uint8], width: int, height: int, interpolation: Interpolation) -> NDArray[np.uint8]:
    if interpolation == "pil_bilinear":
        return np.array(Image.fromarray(crop).resize((width, height), Image.Resampling.BILINEAR))
    if interpolation == "area_or_cubic":
        enlarging = width > crop.shape[1] or height > crop.shape[0]
        flag = cv2.INTER_CUBIC if enlarging else cv2.INTER_AREA
    else:
        flag = _CV2_FLAGS[interpolation]
    return cast(NDArray[np.uint8], cv2.resize(crop, (width, height), interpolation=flag))
