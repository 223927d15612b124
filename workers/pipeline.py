"""The detection pipeline on one local video or image file: no database, no broker, no storage.

probe → sample → decode → faces → tracks → crops → every detector (batched) → per-track scoring → verdict.
A still image is a video of one frame: every face is a track of length 1. Used by the Celery task and by the
local tools alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from core.media.decode import Frame, decode_frames
from core.media.probe import Limits, VideoInfo, check_limits, probe_video
from core.results import (
    Box,
    DetectionPlan,
    FrameCounts,
    FrameRow,
    JobResult,
    Track,
    TrackDetection,
    Tracks,
    VideoMeta,
)
from core.scope import judge_scope
from core.scoring.sampling import fixed_rate_indices, uniform_indices
from core.scoring.signal_rules import rule_score
from core.scoring.verdict import CalibrationState, FusionSpec, score_video
from core.signals import SignalReport
from core.vocabulary import SAMPLING_STRATEGIES, MediaKind, Stage, Verdict
from models.pack import LoadedPack
from workers.forensics.compute import compute_signals
from workers.forensics.pairs import companion_indices, split_companions
from workers.forensics.readings import Sighting
from workers.media.crops import CropKey, cut_crops
from workers.media.faces import Face, FaceDetector
from workers.media.tracks import link_tracks
from workers.members import member_preprocessing, member_specs, pack_fusion_spec, predict_members

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

MIN_TRACK_DETECTIONS = 3  # a face seen in fewer sampled frames is too thin to judge a person on


@dataclass(frozen=True)
class PipelineConfig:
    max_frames: int = 32
    sampling: str = "uniform"  # or "fixed_rate": the seed's Option A, rate_fps over at most `window` samples
    rate_fps: float = 2.0
    window: int = 27
    face_batch_size: int = 16
    face_downscale: float = 1.0  # < 1: this factor for every video, faces down to the detector's minimum kept
    # Otherwise frames whose short side is longer are detected at this size; None: always at full size.
    face_short_side: int | None = 720
    # MTCNN searches every this-many-th sampled frame (and the last); the frames between are searched only
    # where a neighbouring keyframe had faces (see FaceDetector.detect). 1: every frame searched in full.
    face_keyframe_every: int = 4
    min_face_frames: int = 3
    limits: Limits = field(default_factory=Limits)


@dataclass
class PipelineOutput:
    """The result, the per-frame rows for ``frame_scores``, and what the tools look at besides."""

    result: JobResult
    frame_rows: list[FrameRow]
    frames: list[Frame]
    faces: list[list[Face]]
    scored: ScoredCrops | None = None  # None: no face reached the detectors


@dataclass(frozen=True)
class ScoredCrops:
    """What each member was fed and gave, row j being detection j: kept for the heatmaps (workers/explain)."""

    detections: list[_Detection]
    crops: dict[CropKey, np.ndarray]
    scores: dict[str, np.ndarray]  # member -> P(fake) per row


@dataclass(frozen=True)
class Decoded:
    """A video probed, sampled and decoded: the front of the pipeline, see :func:`decode_video`."""

    info: VideoInfo
    frames: list[Frame]
    timings: dict[str, float]  # "probe" and "decode" seconds
    # The sampled indices that did not decode (past the real end, truncated or broken stream): recorded in
    # the result, so a verdict is never presented as resting on more frames than it saw.
    missing: tuple[int, ...] = ()
    # The frame right after some sampled ones, by sampled index: the temporal signals compare adjacent frames.
    after: dict[int, Frame] = field(default_factory=dict)


@dataclass
class _Detection:
    track_id: int
    position: int  # index into the sampled frames
    face: Face


def _noop(stage: str, progress: float) -> None:
    return None


def _video_meta(decoded: Decoded, with_face: int) -> VideoMeta:
    info = decoded.info
    return VideoMeta(
        info.width,
        info.height,
        info.fps,
        info.frame_count,
        info.duration_s,
        info.container,
        info.codec,
        frame_counts(decoded, with_face),
    )


def frame_counts(decoded: Decoded, with_face: int) -> FrameCounts:
    """Frames requested, decoded and with a face, and which requested ones did not decode."""
    return FrameCounts(len(decoded.frames) + len(decoded.missing), len(decoded.frames), with_face, decoded.missing)


def tracked_detections(faces: list[list[Face]]) -> list[_Detection]:
    tracks = link_tracks([[f.box for f in frame_faces] for frame_faces in faces])
    # Fewer sampled frames than that (a still image: one) cannot make a track that long: every face counts.
    shortest = min(MIN_TRACK_DETECTIONS, len(faces))
    kept = [t for t in tracks if len(t) >= shortest] or tracks[:1]
    return [
        _Detection(track_id, position, faces[position][det])
        for track_id, track in enumerate(kept)
        for position, det in sorted(track)
    ]


def member_crops(frames: list[Frame], detections: list[_Detection], pack: LoadedPack) -> dict[CropKey, np.ndarray]:
    """Each detection's crops, cut once per distinct (convention, size) among the members: see `cut_crops`."""
    faces = [(frames[d.position].image, d.face.box) for d in detections]
    return cut_crops(faces, [(m.detector.crop, m.detector.input_size) for m in pack.members])


def sample_indices(info: VideoInfo, config: PipelineConfig) -> list[int]:
    if info.media is MediaKind.IMAGE:
        return [0]
    if config.sampling == "fixed_rate":
        return fixed_rate_indices(info.frame_count, info.fps, config.rate_fps, config.window)
    if config.sampling == "uniform":
        return uniform_indices(info.frame_count, config.max_frames)
    raise ValueError(f"unknown sampling strategy {config.sampling!r}; use one of {SAMPLING_STRATEGIES}")


def face_detection_plan(height: int, width: int, min_face_size: int, config: PipelineConfig) -> tuple[float, float]:
    """(downscale, smallest face looked for in full-frame px) for MTCNN on frames of this size.

    A frame whose short side is over ``config.face_short_side`` is detected at that size, with the detector's
    minimum face size *there*: at 720 a 1080p frame is searched for faces of 60 px and up instead of 40, for
    about half of MTCNN's CPU time (tools.bench measures it and the verdicts it changes). An explicit
    ``face_downscale`` < 1 overrides this and keeps the minimum in full-frame pixels.
    """
    if config.face_downscale < 1:
        return config.face_downscale, float(min_face_size)
    short = min(height, width)
    if not config.face_short_side or short <= config.face_short_side:
        return 1.0, float(min_face_size)
    scale = config.face_short_side / short
    return scale, min_face_size / scale


def decode_video(path: Path, config: PipelineConfig, progress: Progress = _noop) -> Decoded:
    """Probe, check the limits, sample and decode.

    The prefetch hook: this part needs no model, and PyAV decodes with the GIL released, so a caller can run
    it for the next video in a thread while the current one is in inference, then pass the result to
    :func:`run_pipeline` as ``decoded`` (tools.bench measures what that overlap gains).
    """
    start = time.perf_counter()
    progress("probing", 0.05)
    info = probe_video(path)
    check_limits(info, config.limits)
    indices = sample_indices(info, config)
    pairs = companion_indices(indices, info.frame_count) if info.media is MediaKind.VIDEO else []
    probed = time.perf_counter()
    progress(Stage.DECODING, 0.1)
    decoded = decode_frames(path, [*indices, *pairs])
    frames, after = split_companions(decoded.frames, indices, pairs)
    sampled = set(indices)
    missing = [i for i in decoded.missing if i in sampled]
    if missing:
        log.warning("%s: %d of %d sampled frames did not decode: %s", path.name, len(missing), len(sampled), missing)
    timings = {"probe": round(probed - start, 4), "decode": round(time.perf_counter() - probed, 4)}
    return Decoded(info, frames, timings, tuple(missing), after)


def job_signals(path: Path, decoded: Decoded, detections: list[_Detection], pack: LoadedPack) -> SignalReport:
    """The forensic signals of the video and its tracked faces, with the scope check's reason (core/scope.py)."""
    frames = decoded.frames
    sightings = [
        Sighting(d.track_id, frames[d.position], d.face.box, decoded.after.get(frames[d.position].index))
        for d in detections
    ]
    report = compute_signals(path, decoded.info, decoded.frames, sightings)
    sizes = [m.detector.input_size for m in pack.members]
    reason = judge_scope(report.values["scope.flat_share"], report.values["scope.face_px"], sizes)
    return replace(report, scope=None if reason is None else reason.value)


def run_pipeline(
    path: Path,
    detector: FaceDetector,
    pack: LoadedPack,
    config: PipelineConfig,
    calibration: CalibrationState | None = None,
    fusion: FusionSpec | None = None,
    known_label: str | None = None,
    progress: Progress = _noop,
    decoded: Decoded | None = None,
) -> PipelineOutput:
    """``calibration`` and ``fusion`` come from the active calibration version; None means identity
    calibration and the pack's own fusion method and thresholds. ``decoded``: this video already decoded
    by :func:`decode_video` (prefetched); None decodes it here."""
    fusion = fusion or pack_fusion_spec(pack)
    if decoded is None:
        decoded = decode_video(path, config, progress)
    info, frames = decoded.info, decoded.frames
    timings: dict[str, float] = dict(decoded.timings)
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[stage] = round(now - clock, 4)
        clock = now

    progress("detecting_faces", 0.3)
    # The decoded size, not the container's: a display rotation swaps width and height.
    height, width = frames[0].image.shape[:2] if frames else (info.height, info.width)
    downscale, min_face_px = face_detection_plan(height, width, detector.min_face_size, config)
    faces = detector.detect(
        [f.image for f in frames],
        batch_size=config.face_batch_size,
        downscale=downscale,
        min_face_px=min_face_px,
        keyframe_every=config.face_keyframe_every,
    )
    keyframe_every = detector.keyframe_interval(config.face_keyframe_every)
    detection = DetectionPlan(round(downscale, 4), round(min_face_px, 1), keyframe_every)
    lap("faces")

    frames_with_face = sum(1 for f in faces if f)
    base = JobResult(
        verdict=Verdict.NO_FACE,
        score=None,
        raw_score=None,
        method=fusion.method,
        t_low=fusion.t_low,
        t_high=fusion.t_high,
        frames_sampled=len(frames),
        faces_found=sum(len(f) for f in faces),
        tracks=Tracks(frames_with_face, detection, None),
        video=_video_meta(decoded, frames_with_face),
        preprocessing=member_preprocessing(pack),
        model_pack=f"{pack.manifest.name}@{pack.manifest.version}",
        test_pack=pack.manifest.test_pack,
        calibration_version=calibration.version if calibration else None,
        media=info.media,
    )
    if frames_with_face < min(config.min_face_frames, len(frames)) or frames_with_face == 0:
        # No face model judged anything: the signals' rule reading is the only answer there is (low confidence).
        signals = job_signals(path, decoded, [], pack)
        signals = replace(signals, reading=rule_score(signals.values))
        lap("signals")
        timings["total"] = round(sum(timings.values()), 4)
        return PipelineOutput(replace(base, timings=dict(timings), signals=signals), [], frames, faces)

    detections = tracked_detections(faces)
    lap("tracks")
    signals = job_signals(path, decoded, detections, pack)
    lap("signals")

    progress(Stage.SCORING, 0.55)
    crops = member_crops(frames, detections, pack)
    lap("crops")

    members = len(pack.members)
    predicted = predict_members(pack, crops, lambda done: progress(Stage.SCORING, 0.55 + 0.35 * done / members))
    per_model_scores, failed = predicted.scores, {**pack.failed, **predicted.failed}
    timings.update(predicted.timings)
    clock = time.perf_counter()

    track_scores: dict[str, dict[int, list[float]]] = {}
    for name, scores in per_model_scores.items():
        by_track: dict[int, list[float]] = {}
        for d, s in zip(detections, scores, strict=True):
            by_track.setdefault(d.track_id, []).append(float(s))
        track_scores[name] = by_track
    video_score = score_video(
        track_scores,
        member_specs(pack),
        fusion,
        calibration=calibration,
        failed_models=failed,
        known_label=known_label,
        signals=signals,
    )
    lap("fusion")

    track_frames: dict[int, list[TrackDetection]] = {}
    frame_rows: list[FrameRow] = []
    for j, d in enumerate(detections):
        frame = frames[d.position]
        box = Box(*(round(v, 1) for v in d.face.box))
        track_frames.setdefault(d.track_id, []).append(TrackDetection(frame.index, round(frame.timestamp_s, 3), box))
        frame_rows.extend(
            FrameRow(frame.index, frame.timestamp_s, d.track_id, box, d.face.prob, name, float(scores[j]))
            for name, scores in per_model_scores.items()
        )
    scored = video_score.per_track
    tracks = tuple(
        Track(
            tid, tuple(seen), scored[tid].score, scored[tid].raw_fused, scored[tid].frames, dict(scored[tid].per_model)
        )
        for tid, seen in sorted(track_frames.items())
    )
    timings["total"] = round(sum(timings.values()), 4)
    result = replace(
        base,
        verdict=video_score.verdict,
        score=video_score.score,
        raw_score=video_score.raw_fused,
        method=video_score.method,
        t_low=video_score.thresholds["t_low"],
        t_high=video_score.thresholds["t_high"],
        per_model=dict(video_score.per_model),
        tracks=Tracks(frames_with_face, detection, video_score.worst_track, tracks),
        overrides=video_score.overrides,
        faces_found=len(detections),
        timings=dict(timings),
        signals=replace(signals, reading=video_score.signals),
    )
    return PipelineOutput(result, frame_rows, frames, faces, ScoredCrops(detections, crops, per_model_scores))
