"""Find faces with MTCNN (facenet-pytorch) and cut padded, resized face crops."""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import detect_face
from numpy.typing import NDArray

from workers.media.mtcnn import detect_face as sat_detect_face

Box = tuple[float, float, float, float]  # x1, y1, x2, y2 in full-frame pixels

# MTCNN's P-Net looks at 12 px windows: a smaller minimum face size would mean upsampling the frame.
_PNET_WINDOW_PX = 12


@dataclass(frozen=True)
class Face:
    box: Box  # as MTCNN returns it: may reach slightly outside the frame; crop_face clamps
    prob: float


class FaceDetector:
    """MTCNN with the seed's settings. Loads its weights when constructed: build one per process."""

    def __init__(self, device: str | torch.device = "cpu", *, min_face_size: int = 40, min_prob: float = 0.9) -> None:
        self.min_face_size = min_face_size
        self.min_prob = min_prob
        self._mtcnn = MTCNN(min_face_size=min_face_size, keep_all=True, select_largest=False, device=device)
        self._device = torch.device(device)

    def detect(
        self,
        frames: Sequence[NDArray[np.uint8]],
        batch_size: int = 16,
        downscale: float = 1.0,
        min_face_px: float | None = None,
    ) -> list[list[Face]]:
        """Faces with prob >= min_prob in each frame (H x W x 3 RGB uint8, all the same size),
        most probable first.

        With `downscale` < 1 MTCNN runs on frames shrunk by that factor and the boxes are mapped back.
        The minimum face size is scaled with it, so the smallest face found stays `min_face_px` (default
        `min_face_size`) full-frame pixels: the image pyramid then has the same scales relative to the full
        frame, which keeps recall and P-Net's cost; only resampling gets cheaper. Raising `min_face_px` with
        the downscale (the pipeline's resolution rule) is what cuts P-Net's work. The DFDC winner's 8x came
        from comparing against MTCNN's default 20 px minimum at full size.
        """
        if not 0 < downscale <= 1:
            raise ValueError(f"downscale must be in (0, 1], got {downscale}")
        min_size = (min_face_px or self.min_face_size) * downscale
        if min_size < _PNET_WINDOW_PX:
            raise ValueError(f"downscale {downscale} would need faces under {_PNET_WINDOW_PX} px to be found")
        if not frames:
            return []
        height, width = frames[0].shape[:2]
        if any(frame.shape != (height, width, 3) for frame in frames):
            raise ValueError("frames must all be H x W x 3 and the same size")
        small_w, small_h = max(1, round(width * downscale)), max(1, round(height * downscale))
        # Exact factors back to full-frame pixels (rounding the small size changes them slightly).
        scale = np.array([width / small_w, height / small_h] * 2)
        faces: list[list[Face]] = []
        for start in range(0, len(frames), batch_size):
            batch = list(frames[start : start + batch_size])
            if downscale < 1:
                batch = [_resize(f, small_w, small_h, cv2.INTER_AREA) for f in batch]
            nets = (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet, self._mtcnn.thresholds, self._mtcnn.factor)
            with torch.inference_mode():
                if self._device.type == "cpu":
                    # Same stages, area resampling from a summed-area table: 1.4x less CPU time at <= 720 px
                    # (workers.bench); facenet's per-box adaptive pooling is what is slow on CPU, not on CUDA.
                    boxes_per_frame = sat_detect_face(np.stack(batch), min_size, *nets)
                else:
                    # MTCNN.detect() calls this too; calling it directly lets the minimum face size vary per call.
                    pixels = torch.from_numpy(np.stack(batch)).to(self._device)
                    boxes_per_frame, _ = detect_face(pixels, min_size, *nets, self._device)
            faces.extend(self._to_faces(rows, scale) for rows in boxes_per_frame)
        return faces

    def _to_faces(self, rows: NDArray[np.float32], scale: NDArray[np.float64]) -> list[Face]:
        kept = [row for row in rows if row[4] >= self.min_prob]
        kept.sort(key=lambda row: -float(row[4]))
        return [Face(_as_box(row[:4] * scale), float(row[4])) for row in kept]


def _as_box(values: NDArray[np.float64]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


def crop_face(image: NDArray[np.uint8], box: Box, *, size: int, padding: int = 30) -> NDArray[np.uint8]:
    """The box grown by `padding` px on each side, clamped to the frame, resized to size x size RGB.

    The aspect ratio is not kept (as in the seed); MTCNN boxes are close to square, so only crops
    clamped at a frame border are stretched.
    """
    height, width = image.shape[:2]
    x1 = max(0, math.floor(box[0]) - padding)
    y1 = max(0, math.floor(box[1]) - padding)
    x2 = min(width, math.ceil(box[2]) + padding)
    y2 = min(height, math.ceil(box[3]) + padding)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box {box} with padding {padding} lies outside the {width}x{height} frame")
    crop = image[y1:y2, x1:x2]
    shrinking = crop.shape[0] >= size and crop.shape[1] >= size
    return _resize(crop, size, size, cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)


def _resize(image: NDArray[np.uint8], width: int, height: int, interpolation: int) -> NDArray[np.uint8]:
    return cast(NDArray[np.uint8], cv2.resize(image, (width, height), interpolation=interpolation))
