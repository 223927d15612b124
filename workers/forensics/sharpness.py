"""Blur: the variance of the Laplacian of the frame, of the face, and the face's against its surroundings'."""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np
from numpy.typing import NDArray

from core.media.decode import Frame
from workers.forensics.readings import Readings, Seen
from workers.forensics.regions import FaceRegion

# Whole-frame sharpness on this many evenly spread frames: its median settles well before that.
FRAMES_FOR_BLUR = 8


def laplacian(luma: NDArray[np.float32]) -> NDArray[np.float32]:
    return np.asarray(cv2.Laplacian(luma, cv2.CV_32F, ksize=3), np.float32)


def laplacian_variance(luma: NDArray[np.float32]) -> float:
    """The variance of the Laplacian: high for sharp detail, near 0 for a blurred picture."""
    return float(laplacian(luma).var()) if min(luma.shape) >= 3 else math.nan


def frame_grey(image: NDArray[np.uint8]) -> NDArray[np.float32]:
    """A whole frame's luma: OpenCV's conversion, several times faster than the float one on 1080p."""
    return np.asarray(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), np.float32)


def region_sharpness(region: FaceRegion) -> tuple[float, float]:
    """(face, ring) Laplacian variance, each over its own pixels of the window."""
    response = laplacian(region.grey)
    return float(response[region.face].var()), float(response[region.ring].var())


def measure_sharpness(frames: Sequence[Frame], faces_seen: Sequence[Seen], readings: Readings) -> None:
    picks = np.unique(np.linspace(0, len(frames) - 1, min(len(frames), FRAMES_FOR_BLUR)).round().astype(int))
    frame_values = [laplacian_variance(frame_grey(frames[int(i)].image)) for i in picks] if frames else []
    readings.put("quality.blur_frame", float(np.median(frame_values)) if frame_values else math.nan, "no frame")
    faces: list[tuple[int, float]] = []
    ratios: list[tuple[int, float]] = []
    for s in faces_seen:
        face, ring = region_sharpness(s.region)
        faces.append((s.track_id, face))
        ratios.append((s.track_id, face / ring if ring > 1e-6 else math.nan))
    readings.per_track("quality.blur_face", faces, "no face")
    readings.per_track("quality.face_sharpness_ratio", ratios, "no face, or a flat ring around it")
