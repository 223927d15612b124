"""Live-stream frames -> faces -> every member's P(fake) per face, for frames of many sessions in one batch.

The same steps as a file's (workers/pipeline.py): MTCNN with the pipeline's resolution rule, the members' crop
conventions cut once each (``cut_crops``), every member batched over all the crops (``predict_members``). A frame
is searched for faces on its own (no keyframes): the frames of one batch come from different sessions.
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps

from core.media.probe import Limits
from workers.media.crops import Box, cut_crops
from workers.media.faces import Face
from workers.members import predict_members
from workers.pipeline import face_detection_plan
from workers.resources import Resources

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScoredFace:
    box: Box
    prob: float
    scores: dict[str, float]  # member -> P(fake); a member whose detector raised is missing


@dataclass(frozen=True)
class ScoredImage:
    """One frame's faces (none: no face found, or ``error`` says why it could not be read)."""

    faces: list[ScoredFace]
    error: str | None = None


def decode_image(data: bytes, max_pixels: int = Limits().max_pixels) -> NDArray[np.uint8]:
    """A JPEG or PNG frame as H x W x 3 RGB, upright by its EXIF orientation; ValueError when it is not one."""
    try:
        with Image.open(io.BytesIO(data), formats=["JPEG", "PNG"]) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ValueError(f"a {width}x{height} frame is over {max_pixels} pixels")
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"not a readable JPEG or PNG frame ({exc})") from exc


class FrameScorer:
    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    def _faces(self, images: list[NDArray[np.uint8] | None]) -> list[list[Face]]:
        """Faces per image; MTCNN takes one frame size per call, so frames are grouped by size."""
        detector, config = self.resources.faces, self.resources.config
        found: list[list[Face]] = [[] for _ in images]
        sizes: dict[tuple[int, ...], list[int]] = {}
        for i, image in enumerate(images):
            if image is not None:
                sizes.setdefault(image.shape, []).append(i)
        for shape, positions in sizes.items():
            downscale, min_face_px = face_detection_plan(shape[0], shape[1], detector.min_face_size, config)
            group = [images[i] for i in positions]
            faces = detector.detect(
                [g for g in group if g is not None],
                batch_size=config.face_batch_size,
                downscale=downscale,
                min_face_px=min_face_px,
                keyframe_every=1,
            )
            for i, frame_faces in zip(positions, faces, strict=True):
                found[i] = frame_faces
        return found

    def score(self, frames: list[bytes]) -> list[ScoredImage]:
        images: list[NDArray[np.uint8] | None] = []
        errors: list[str | None] = []
        for data in frames:
            try:
                images.append(decode_image(data))
                errors.append(None)
            except ValueError as exc:
                images.append(None)
                errors.append(str(exc))
        faces = self._faces(images)
        pairs = [(image, face.box) for image, fs in zip(images, faces, strict=True) if image is not None for face in fs]
        if not pairs:
            return [ScoredImage([], error) for error in errors]
        pack = self.resources.pack
        crops = cut_crops(pairs, [(m.detector.crop, m.detector.input_size) for m in pack.members])
        predicted = predict_members(pack, crops)
        if predicted.failed:
            log.warning("stream frames: members failed: %s", predicted.failed)
        out: list[ScoredImage] = []
        row = 0
        for fs, error in zip(faces, errors, strict=True):
            scored = []
            for face in fs:
                scores = {name: float(values[row]) for name, values in predicted.scores.items()}
                scored.append(ScoredFace(face.box, float(face.prob), scores))
                row += 1
            out.append(ScoredImage(scored, error))
        return out
