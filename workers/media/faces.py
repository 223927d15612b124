"""Find faces with MTCNN (facenet-pytorch); :mod:`workers.media.crops` cuts the crops."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np
import torch
from facenet_pytorch import MTCNN
from facenet_pytorch.models.utils.detect_face import detect_face
from numpy.typing import NDArray

from workers.media.crops import Box
from workers.media.mtcnn import detect_face as sat_detect_face
from workers.media.mtcnn import refine_faces

# MTCNN's P-Net looks at 12 px windows: a smaller minimum face size would mean upsampling the frame.
_PNET_WINDOW_PX = 12


@dataclass(frozen=True)
class Face:
    box: Box  # as MTCNN returns it: may reach slightly outside the frame; crops are cut inside it
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
        keyframe_every: int = 1,
    ) -> list[list[Face]]:
        """Faces with prob >= min_prob in each frame (H x W x 3 RGB uint8, all the same size),
        most probable first.

        With `downscale` < 1 MTCNN runs on frames shrunk by that factor and the boxes are mapped back.
        The minimum face size is scaled with it, so the smallest face found stays `min_face_px` (default
        `min_face_size`) full-frame pixels: the image pyramid then has the same scales relative to the full
        frame, which keeps recall and P-Net's cost; only resampling gets cheaper. Raising `min_face_px` with
        the downscale (the pipeline's resolution rule) is what cuts P-Net's work. The DFDC winner's 8x came
        from comparing against MTCNN's default 20 px minimum at full size.

        With `keyframe_every` = K > 1 (CPU only, see :meth:`keyframe_interval`), every K-th frame and the last are
        searched in full; a frame between two keyframes gets R-Net and O-Net on the keyframes' face boxes only,
        and a full search after all if that finds fewer faces than either keyframe had. K = 4 halved MTCNN's
        time on the 37 test clips with the same verdicts (tools.bench); the boxes move by a few pixels.
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

        def shrunk(positions: Sequence[int]) -> NDArray[np.uint8]:
            batch = [frames[i] for i in positions]
            if downscale < 1:
                batch = [_resize(f, small_w, small_h, cv2.INTER_AREA) for f in batch]
            return np.stack(batch)

        keys = sorted({*range(0, len(frames), self.keyframe_interval(keyframe_every)), len(frames) - 1})
        rows: dict[int, NDArray[np.float32]] = {}
        for start in range(0, len(keys), batch_size):
            chunk = keys[start : start + batch_size]
            rows.update(zip(chunk, self._detect(shrunk(chunk), min_size), strict=True))
        between = [i for i in range(len(frames)) if i not in rows]
        if between:
            # A face in a frame between two keyframes is looked for where it was in either: R-Net and O-Net on
            # those boxes, without P-Net's search of the whole frame (most of MTCNN's time).
            around = {i: _neighbours(keys, i) for i in between}
            at_keys = {k: self._kept(rows[k]) for k in keys}
            for start in range(0, len(between), batch_size):
                chunk = between[start : start + batch_size]
                candidates = [np.concatenate([at_keys[k][:, :4] for k in around[i]]) for i in chunk]
                nets = (self._mtcnn.rnet, self._mtcnn.onet, self._mtcnn.thresholds)
                with torch.inference_mode():
                    rows.update(zip(chunk, refine_faces(shrunk(chunk), candidates, *nets), strict=True))
            # Fewer faces than a neighbouring keyframe had (one left, or was missed): search the whole frame.
            lost = [i for i in between if len(self._kept(rows[i])) < max(len(at_keys[k]) for k in around[i])]
            for start in range(0, len(lost), batch_size):
                chunk = lost[start : start + batch_size]
                rows.update(zip(chunk, self._detect(shrunk(chunk), min_size), strict=True))
        return [self._to_faces(rows[i], scale) for i in range(len(frames))]

    def keyframe_interval(self, requested: int) -> int:
        """The keyframe interval `detect` uses when asked for `requested`: 1 (every frame searched) on a GPU,
        where P-Net over the whole batch is cheap and the between-frames step (CPU summed-area tables) is not."""
        if requested < 1:
            raise ValueError(f"keyframe_every must be >= 1, got {requested}")
        return requested if self._device.type == "cpu" else 1

    def _detect(self, batch: NDArray[np.uint8], min_size: float) -> list[NDArray[np.float32]]:
        nets = (self._mtcnn.pnet, self._mtcnn.rnet, self._mtcnn.onet, self._mtcnn.thresholds, self._mtcnn.factor)
        with torch.inference_mode():
            if self._device.type == "cpu":
                # Same stages, area resampling from a summed-area table: 1.4x less CPU time at <= 720 px
                # (tools.bench); facenet's per-box adaptive pooling is what is slow on CPU, not on CUDA.
                return sat_detect_face(batch, min_size, *nets)
            # MTCNN.detect() calls this too; calling it directly lets the minimum face size vary per call.
            boxes_per_frame, _ = detect_face(torch.from_numpy(batch).to(self._device), min_size, *nets, self._device)
            return list(boxes_per_frame)

    def _kept(self, rows: NDArray[np.float32]) -> NDArray[np.float32]:
        table = np.asarray(rows, np.float32).reshape(-1, 5)
        return table[table[:, 4] >= self.min_prob]

    def _to_faces(self, rows: NDArray[np.float32], scale: NDArray[np.float64]) -> list[Face]:
        kept = [row for row in rows if row[4] >= self.min_prob]
        kept.sort(key=lambda row: -float(row[4]))
        return [Face(_as_box(row[:4] * scale), float(row[4])) for row in kept]


def _neighbours(keys: Sequence[int], position: int) -> list[int]:
    """The keyframes just before and just after `position` (which lies between two of them)."""
    after = next(k for k in keys if k > position)
    before = max(k for k in keys if k < position)
    return [before, after]


def _as_box(values: NDArray[np.float64]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


def _resize(image: NDArray[np.uint8], width: int, height: int, interpolation: int) -> NDArray[np.uint8]:
    return cast(NDArray[np.uint8], cv2.resize(image, (width, height), interpolation=interpolation))
