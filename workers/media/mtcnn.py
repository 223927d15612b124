"""MTCNN's three stages (facenet-pytorch's ``detect_face``) with its area resampling done from a summed-area table.

facenet-pytorch resamples with ``interpolate(mode="area")`` (adaptive average pooling) twice over: the whole float
batch once per pyramid scale, then one call per candidate box for R-Net (24 px) and O-Net (48 px). On CPU that
was most of MTCNN's time (tools.bench: 1080p frames, hundreds of candidate boxes each, some frame-sized).
Every pooled value is the mean of an integer-bounded window, so an exact integer summed-area table per frame turns
each one into four lookups, vectorised over all boxes at once; the networks, thresholds, NMS and box arithmetic
are facenet's own. Results match facenet's ``detect_face`` to float rounding (the sums are exact here, float32
there; the quotient is taken in float32, exact for these window sizes). It never holds the batch as float32,
only the integer table.

Adapted from facenet-pytorch 2.6.0 (MIT licence, (c) 2019 Timothy Esler).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from facenet_pytorch.models.utils.detect_face import (
    batched_nms_numpy,
    bbreg,
    fixed_batch_process,
    generateBoundingBox,
    pad,
    rerec,
)
from numpy.typing import NDArray
from torch import Tensor, nn
from torchvision.ops.boxes import batched_nms


def integral_images(frames: NDArray[np.uint8]) -> Tensor:
    """(B, H, W, 3) uint8 -> (B, H + 1, W + 1, 3) summed-area tables (OpenCV's), zero first row and column.

    int32 holds 255 * H * W exactly up to 8.4 Mpx (4K UHD); larger frames get float64, exact to 2**53.
    """
    batch, height, width = frames.shape[:3]
    exact32 = 255 * height * width < 2**31
    table = np.empty((batch, height + 1, width + 1, 3), np.int32 if exact32 else np.float64)
    for b in range(batch):  # into the batch array directly: stacking per-frame tables cost 3x the tables
        cv2.integral(frames[b], sum=table[b], sdepth=cv2.CV_32S if exact32 else cv2.CV_64F)
    return torch.from_numpy(table)


def _bounds(start: Tensor, length: Tensor, out: int) -> tuple[Tensor, Tensor]:
    """Adaptive pooling's windows: [start + floor(i*L/out), start + ceil((i+1)*L/out)) for i < out, per row."""
    i = torch.arange(out, device=length.device)
    lo = start[:, None] + (i[None, :] * length[:, None]) // out
    hi = start[:, None] + ((i[None, :] + 1) * length[:, None] + out - 1) // out
    return lo, hi


def resample_frames(table: Tensor, height: int, width: int, out_h: int, out_w: int) -> Tensor:
    """Every frame area-resampled to (out_h, out_w): (B, 3, out_h, out_w) float32, channels_last."""
    zero = torch.zeros(1, dtype=torch.long)
    r0, r1 = (b[0] for b in _bounds(zero, torch.tensor([height]), out_h))
    c0, c1 = (b[0] for b in _bounds(zero, torch.tensor([width]), out_w))
    rows = table.index_select(1, r1) - table.index_select(1, r0)  # (B, out_h, W + 1, 3): window sums per column
    sums = rows.index_select(2, c1) - rows.index_select(2, c0)
    counts = ((r1 - r0)[:, None] * (c1 - c0)[None, :])[..., None]
    # channels_last, as facenet's pyramid levels are: P-Net's convolutions ran 2x slower on NCHW on CPU.
    return (sums.float() / counts).permute(0, 3, 1, 2)


def resample_boxes(
    table: Tensor, image_inds: Tensor, y0: Tensor, x0: Tensor, h: Tensor, w: Tensor, size: int
) -> Tensor:
    """Box k (rows y0..y0+h, cols x0..x0+w of frame image_inds[k]) area-resampled to size x size: (K, 3, S, S),
    channels_last."""
    r0, r1 = _bounds(y0, h, size)
    c0, c1 = _bounds(x0, w, size)
    # All four corners of every window in one index_select on the flattened table: 3x faster on CPU than
    # indexing the 4-D table with broadcast (frame, row, column) index tensors, once per corner.
    rows_per_frame, cols = table.shape[1], table.shape[2]
    frame_rows = image_inds[:, None] * rows_per_frame
    rows = torch.stack([frame_rows + r1, frame_rows + r0])[:, :, :, None] * cols  # (2, K, S, 1)
    flat = (rows[:, None] + torch.stack([c1, c0])[None, :, :, None, :]).reshape(-1)  # (2, 2, K, S, S)
    corners = table.reshape(-1, 3).index_select(0, flat).view(2, 2, len(image_inds), size, size, 3)
    sums = corners[0, 0] - corners[1, 0] - corners[0, 1] + corners[1, 1]
    counts = ((r1 - r0)[:, :, None] * (c1 - c0)[:, None, :])[..., None]
    # channels_last (a view of the NHWC sums): R-Net and O-Net ran 2.7x faster on it than on NCHW on CPU.
    return (sums.float() / counts).permute(0, 3, 1, 2)


def _crops(table: Tensor, boxes: Tensor, image_inds: Tensor, w: int, h: int, size: int) -> tuple[Tensor, Tensor]:
    """The normalised network input for each box, and which boxes had a non-empty crop (facenet skips the rest)."""
    y, ey, x, ex = (torch.from_numpy(v).long() for v in pad(boxes, w, h))
    keep = (ey > y - 1) & (ex > x - 1)
    y, ey, x, ex = y[keep], ey[keep], x[keep], ex[keep]
    data = resample_boxes(table, image_inds[keep], y - 1, x - 1, ey - y + 1, ex - x + 1, size)
    return (data - 127.5) * 0.0078125, keep


def _pyramid_scales(h: int, w: int, minsize: float, factor: float) -> list[float]:
    m = 12.0 / minsize
    minl = min(h, w) * m
    scales = []
    scale_i = m
    while minl >= 12:
        scales.append(scale_i)
        scale_i = scale_i * factor
        minl = minl * factor
    return scales


def _proposals(
    table: Tensor, h: int, w: int, minsize: float, pnet: nn.Module, threshold: float, factor: float
) -> tuple[Tensor, Tensor]:
    """First stage: P-Net over the pyramid. Square candidate boxes (N, 5: x1, y1, x2, y2, score) and their frames."""
    boxes_l, inds_l, picks_l = [], [], []
    offset = 0
    for scale in _pyramid_scales(h, w, minsize, factor):
        im_data = resample_frames(table, h, w, int(h * scale + 1), int(w * scale + 1))
        reg, probs = pnet((im_data - 127.5) * 0.0078125)
        boxes_scale, image_inds_scale = generateBoundingBox(reg, probs[:, 1], scale, threshold)
        boxes_l.append(boxes_scale)
        inds_l.append(image_inds_scale)
        pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], image_inds_scale, 0.5)
        picks_l.append(pick + offset)
        offset += boxes_scale.shape[0]
    picks = torch.cat(picks_l)
    boxes, image_inds = torch.cat(boxes_l)[picks], torch.cat(inds_l)[picks]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
    boxes, image_inds = boxes[pick], image_inds[pick]
    regw = boxes[:, 2] - boxes[:, 0]
    regh = boxes[:, 3] - boxes[:, 1]
    qq1 = boxes[:, 0] + boxes[:, 5] * regw
    qq2 = boxes[:, 1] + boxes[:, 6] * regh
    qq3 = boxes[:, 2] + boxes[:, 7] * regw
    qq4 = boxes[:, 3] + boxes[:, 8] * regh
    return rerec(torch.stack([qq1, qq2, qq3, qq4, boxes[:, 4]]).permute(1, 0)), image_inds


def _scored(
    table: Tensor,
    boxes: Tensor,
    image_inds: Tensor,
    w: int,
    h: int,
    size: int,
    net: nn.Module,
    prob_output: int,
    threshold: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """The boxes `net` (R-Net or O-Net, whose face probability is output `prob_output`) scores over `threshold`:
    (x1, y1, x2, y2, prob), their frames and the net's box regression for each."""
    im_data, keep = _crops(table, boxes, image_inds, w, h, size)
    boxes, image_inds = boxes[keep], image_inds[keep]
    out = fixed_batch_process(im_data, net)
    score = out[prob_output].permute(1, 0)[1, :]
    ipass = score > threshold
    scored = torch.cat((boxes[ipass, :4], score[ipass].unsqueeze(1)), dim=1)
    return scored, image_inds[ipass], out[0].permute(1, 0)[:, ipass].permute(1, 0)


def _refine(
    table: Tensor,
    boxes: Tensor,
    image_inds: Tensor,
    w: int,
    h: int,
    rnet: nn.Module,
    onet: nn.Module,
    threshold: list[float],
) -> tuple[Tensor, Tensor]:
    """Second and third stages on square candidate boxes: the faces (N, 5) and their frames."""
    if len(boxes) > 0:  # R-Net on 24 px crops
        boxes, image_inds, mv = _scored(table, boxes, image_inds, w, h, 24, rnet, 1, threshold[1])
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
        boxes = rerec(bbreg(boxes, mv))
    if len(boxes) > 0:  # O-Net on 48 px crops
        boxes, image_inds, mv = _scored(table, boxes, image_inds, w, h, 48, onet, 2, threshold[2])
        boxes = bbreg(boxes, mv)
        pick = batched_nms_numpy(boxes[:, :4], boxes[:, 4], image_inds, 0.7, "Min")
        boxes, image_inds = boxes[pick], image_inds[pick]
    return boxes, image_inds


def _per_frame(boxes: Tensor, image_inds: Tensor, batch_size: int) -> list[NDArray[np.float32]]:
    found = boxes.cpu().numpy()
    owner = image_inds.cpu().numpy()
    return [found[owner == b].copy() for b in range(batch_size)]


def detect_face(
    frames: NDArray[np.uint8],
    minsize: float,
    pnet: nn.Module,
    rnet: nn.Module,
    onet: nn.Module,
    threshold: list[float],
    factor: float,
) -> list[NDArray[np.float32]]:
    """facenet-pytorch's ``detect_face`` on (B, H, W, 3) uint8 frames, on the CPU: per frame an (N, 5) array of
    x1, y1, x2, y2, prob (landmarks are not computed)."""
    table = integral_images(frames)
    batch_size, h, w = frames.shape[:3]
    boxes, image_inds = _proposals(table, h, w, minsize, pnet, threshold[0], factor)
    return _per_frame(*_refine(table, boxes, image_inds, w, h, rnet, onet, threshold), batch_size)


def refine_faces(
    frames: NDArray[np.uint8],
    candidates: list[NDArray[np.float32]],
    rnet: nn.Module,
    onet: nn.Module,
    threshold: list[float],
) -> list[NDArray[np.float32]]:
    """R-Net and O-Net only, on given candidate boxes per frame ((N, 4) x1, y1, x2, y2), instead of P-Net's:
    the faces of a frame found near where they were in a neighbouring frame, like :func:`detect_face`'s output."""
    table = integral_images(frames)
    batch_size, h, w = frames.shape[:3]
    rows = [torch.from_numpy(np.asarray(c, np.float32).reshape(-1, 4)) for c in candidates]
    boxes = torch.cat([torch.cat([r, torch.ones(len(r), 1)], dim=1) for r in rows])
    image_inds = torch.cat([torch.full((len(r),), b, dtype=torch.long) for b, r in enumerate(rows)])
    return _per_frame(*_refine(table, rerec(boxes), image_inds, w, h, rnet, onet, threshold), batch_size)
