"""The pack's members as the pipeline and the stream workers run them: their specs for scoring, what each is fed,
and each one's P(fake) on its face crops."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from core.preprocessing import normalisation_name
from core.results import Preprocessing
from core.scoring.verdict import FusionSpec, MemberSpec
from models.pack import LoadedPack
from workers.media.crops import CropKey


def member_specs(pack: LoadedPack) -> list[MemberSpec]:
    # Every manifest member, loaded or not: one that failed to load is reported, not silently dropped.
    return [MemberSpec(m.name, m.aggregator, m.weight) for m in pack.manifest.members]


def member_preprocessing(pack: LoadedPack) -> dict[str, Preprocessing]:
    """What each loaded member is fed, for the result."""
    return {
        m.manifest.name: Preprocessing(
            m.detector.crop.name, m.detector.input_size, normalisation_name(m.detector.normalisation)
        )
        for m in pack.members
    }


@dataclass(frozen=True)
class MemberScores:
    """Every loaded member's P(fake) per crop, the members whose detector raised, and each one's seconds."""

    scores: dict[str, np.ndarray]
    failed: dict[str, str]
    timings: dict[str, float]


def predict_members(
    pack: LoadedPack, crops: dict[CropKey, np.ndarray], done: Callable[[int], None] = lambda _n: None
) -> MemberScores:
    """Each member on its crops (from `member_crops` or `cut_crops`), batched by the detector; ``done(n)`` after
    the n-th member. Used for files here and for live streams (workers/streams)."""
    scores: dict[str, np.ndarray] = {}
    failed: dict[str, str] = {}
    timings: dict[str, float] = {}
    for i, member in enumerate(pack.members):
        name = member.manifest.name
        fed = crops[member.detector.crop.name, member.detector.input_size]
        start = time.perf_counter()
        try:
            scores[name] = member.detector.predict(fed)
        except Exception as exc:  # one broken detector is reported; fusion proceeds on the others
            failed[name] = f"{type(exc).__name__}: {exc}"[:500]
        timings[f"model:{name}"] = round(time.perf_counter() - start, 4)
        done(i + 1)
    return MemberScores(scores, failed, timings)


def pack_fusion_spec(pack: LoadedPack) -> FusionSpec:
    f = pack.manifest.fusion
    return FusionSpec(f.method, f.t_low, f.t_high, f.min_models, f.params)
