"""Heavy per-process resources (face detector, model pack), loaded once after the fork, never at import."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache

from core.settings import Settings, get_settings
from db import heartbeat
from models.pack import LoadedPack, load_pack
from workers.media.faces import FaceDetector
from workers.pipeline import PipelineConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Resources:
    device: str
    faces: FaceDetector
    pack: LoadedPack
    config: PipelineConfig


def resolve_device(requested: str) -> str:
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


# On CPU a batch that outgrows the caches costs more than the per-call overhead it saves: tools.bench measured
# MTCNN at 4 frames and the detectors at 8 crops per call as fast or faster than 16 / 32 (MesoNet 2x, 1080p MTCNN
# 1.3x). GPUs want the configured, larger batches.
CPU_FACE_BATCH = 4
CPU_DETECTOR_BATCH = 8


def detector_batch_size(settings: Settings, device: str) -> int:
    return min(settings.detector_batch_size, CPU_DETECTOR_BATCH) if device == "cpu" else settings.detector_batch_size


def pipeline_config(settings: Settings, device: str) -> PipelineConfig:
    face_batch = min(settings.face_batch_size, CPU_FACE_BATCH) if device == "cpu" else settings.face_batch_size
    return PipelineConfig(
        max_frames=settings.max_frames,
        face_batch_size=face_batch,
        face_downscale=settings.face_downscale,
        face_keyframe_every=settings.face_keyframe_every,
        min_face_frames=settings.min_face_frames,
    )


def load_resources(settings: Settings) -> Resources:
    start = time.perf_counter()
    device = resolve_device(settings.device)
    if device == "cpu":
        import torch

        # torch sizes its pool by the machine's cores, not those this process may use (cpuset, taskset).
        torch.set_num_threads(len(os.sched_getaffinity(0)))
    pack = load_pack(
        settings.pack_manifest, settings.weights_dir, device=device, batch_size=detector_batch_size(settings, device)
    )
    faces = FaceDetector(device=device)
    heartbeat.note_model_load(f"{pack.manifest.name}@{pack.manifest.version}", device, time.perf_counter() - start)
    log.info(
        "loaded pack %s (%d members, failed: %s) and MTCNN on %s in %.2fs",
        pack.manifest.name,
        len(pack.members),
        pack.failed or "none",
        device,
        time.perf_counter() - start,
    )
    return Resources(device, faces, pack, pipeline_config(settings, device))


@lru_cache(maxsize=1)
def get_resources() -> Resources:
    return load_resources(get_settings())
