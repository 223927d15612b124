"""The seed-style baseline that ``tools.bench`` measures Verity against. Never used to score jobs.

The same probe, sampled frame indices, track linking, crop geometry and scoring as
:func:`workers.pipeline.run_pipeline`, with the seed's per-item loops around the heavy parts:

- decode: seek to each sampled frame with OpenCV (``CAP_PROP_POS_FRAMES``) and read it;
- faces: facenet's ``MTCNN.detect`` on one full-size frame at a time;
- detectors: every detector called on one crop at a time.

The seed kept only the most probable face (``keep_all=False``); this keeps every face, as Verity does, so the
two produce comparable verdicts and the difference measured is the speed of the loops.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import cv2
import numpy as np
from facenet_pytorch import MTCNN
from numpy.typing import NDArray

from core.media.decode import Frame
from core.media.errors import MediaError
from core.media.probe import check_limits, probe_video
from core.scoring.verdict import ModelScore, score_video
from core.vocabulary import Verdict
from models.detector import Detector
from models.pack import LoadedPack
from workers.media.crops import Box
from workers.media.faces import Face
from workers.members import member_specs, pack_fusion_spec
from workers.pipeline import PipelineConfig, member_crops, sample_indices, tracked_detections

SEED_MIN_FACE_PX = 40
SEED_MIN_PROB = 0.9


def seed_mtcnn(device: str) -> MTCNN:
    return MTCNN(min_face_size=SEED_MIN_FACE_PX, keep_all=True, select_largest=False, device=device)


def read_frames_seeking(path: Path, indices: list[int], fps: float) -> list[Frame]:
    """Seek to each frame and decode it: every seek restarts decoding at the previous keyframe."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise MediaError("DECODE_FAILED", f"OpenCV could not open {path}")
    frames: list[Frame] = []
    try:
        for index in sorted(set(indices)):
            capture.set(cv2.CAP_PROP_POS_FRAMES, index)
            ok, bgr = capture.read()
            if not ok:
                break
            rgb = cast(NDArray[np.uint8], cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            frames.append(Frame(index, index / fps if fps else 0.0, rgb))
    finally:
        capture.release()
    return frames


def detect_one_by_one(mtcnn: MTCNN, images: list[np.ndarray]) -> list[list[Face]]:
    faces: list[list[Face]] = []
    for image in images:
        boxes, probs = mtcnn.detect(image)
        found = [] if boxes is None else zip(boxes, probs, strict=True)
        faces.append([Face(_box(box), float(p)) for box, p in found if p >= SEED_MIN_PROB])
    return faces


def _box(values: np.ndarray) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return x1, y1, x2, y2


def predict_one_by_one(detector: Detector, crops: np.ndarray) -> np.ndarray:
    return np.array([detector.predict(crop[np.newaxis])[0] for crop in crops], dtype=np.float64)


@dataclass(frozen=True)
class NaiveResult:
    """The part of a JobResult the seed computes, under the same names."""

    verdict: Verdict
    score: float | None
    frames_sampled: int
    faces_found: int
    timings: Mapping[str, float]
    per_model: Mapping[str, ModelScore] = field(default_factory=dict)


@dataclass
class NaiveOutput:
    result: NaiveResult
    frames: list[Frame]


def run_naive(path: Path, mtcnn: MTCNN, pack: LoadedPack, config: PipelineConfig) -> NaiveOutput:
    """The verdict and per-model scores, with per-stage ``timings`` under the pipeline's stage names."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = now - clock
        clock = now

    info = probe_video(path)
    check_limits(info, config.limits)
    indices = sample_indices(info, config)
    lap("probe")
    frames = read_frames_seeking(path, indices, info.fps)
    lap("decode")
    faces = detect_one_by_one(mtcnn, [f.image for f in frames])
    lap("faces")
    frames_with_face = sum(1 for f in faces if f)
    if frames_with_face < min(config.min_face_frames, len(frames)) or frames_with_face == 0:
        return NaiveOutput(NaiveResult(Verdict.NO_FACE, None, len(frames), sum(len(f) for f in faces), timings), frames)
    detections = tracked_detections(faces)
    lap("tracks")
    crops = member_crops(frames, detections, pack)
    lap("crops")
    scores: dict[str, np.ndarray] = {}
    for member in pack.members:
        detector = member.detector
        scores[member.manifest.name] = predict_one_by_one(detector, crops[detector.crop.name, detector.input_size])
        lap(f"model:{member.manifest.name}")
    track_scores: dict[str, dict[int, list[float]]] = {}
    for name, per_crop in scores.items():
        for d, s in zip(detections, per_crop, strict=True):
            track_scores.setdefault(name, {}).setdefault(d.track_id, []).append(float(s))
    scored = score_video(track_scores, member_specs(pack), pack_fusion_spec(pack), failed_models=dict(pack.failed))
    lap("fusion")
    # faces_found as the pipeline counts them: the detections it scores.
    result = NaiveResult(scored.verdict, scored.score, len(frames), len(detections), timings, dict(scored.per_model))
    return NaiveOutput(result, frames)
