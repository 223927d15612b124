"""Heavy per-process resources (face detector, model pack), loaded once after the fork, never at import."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from functools import lru_cache

from db import heartbeat
from db.settings import Settings, get_settings
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


def pipeline_config(settings: Settings) -> PipelineConfig:
    return PipelineConfig(
        max_frames=settings.max_frames,
        face_batch_size=settings.face_batch_size,
        face_downscale=settings.face_downscale,
        min_face_frames=settings.min_face_frames,
    )


def load_resources(settings: Settings) -> Resources:
    start = time.perf_counter()
    device = resolve_device(settings.device)
    pack = load_pack(
        settings.pack_manifest, settings.weights_dir, device=device, batch_size=settings.detector_batch_size
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
    return Resources(device, faces, pack, pipeline_config(settings))


@lru_cache(maxsize=1)
def get_resources() -> Resources:
    return load_resources(get_settings())
