"""The parts of a job's result (core/results.py): tracks, boxes, the video, per-model preprocessing.

Each maps to and from its JSON here; readers of stored rows are lenient where older rows lack a part.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

TrackId = int


def opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class Box:
    """A face box in full-frame pixels."""

    x1: float
    y1: float
    x2: float
    y2: float

    def to_json(self) -> dict[str, float]:
        return {"x1": self.x1, "y1": self.y1, "x2": self.x2, "y2": self.y2}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Box:
        return cls(float(data["x1"]), float(data["y1"]), float(data["x2"]), float(data["y2"]))


@dataclass(frozen=True)
class TrackDetection:
    """One sampled frame in which the track's face was found."""

    frame_index: int
    timestamp_s: float
    box: Box

    def to_json(self) -> dict[str, Any]:
        return {"frame_index": self.frame_index, "timestamp_s": self.timestamp_s, "box": self.box.to_json()}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrackDetection:
        return cls(int(data["frame_index"]), float(data["timestamp_s"]), Box.from_json(data["box"]))


@dataclass(frozen=True)
class Track:
    """One face track: where it was seen and its scores (see core.scoring.verdict.TrackScore)."""

    track_id: TrackId
    detections: tuple[TrackDetection, ...]
    score: float
    raw_fused: float
    frames: int
    per_model: Mapping[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "track_id": self.track_id,
            "detections": [d.to_json() for d in self.detections],
            "score": self.score,
            "raw_fused": self.raw_fused,
            "frames": self.frames,
            "per_model": dict(self.per_model),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Track:
        return cls(
            track_id=int(data["track_id"]),
            detections=tuple(TrackDetection.from_json(d) for d in data.get("detections") or ()),
            score=float(data["score"]),
            raw_fused=float(data["raw_fused"]),
            frames=int(data["frames"]),
            per_model={name: float(v) for name, v in (data.get("per_model") or {}).items()},
        )


@dataclass(frozen=True)
class DetectionPlan:
    """How MTCNN searched the frames (workers.pipeline.face_detection_plan); None parts: an older result."""

    downscale: float
    min_face_px: float
    keyframe_every: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {"downscale": self.downscale, "min_face_px": self.min_face_px, "keyframe_every": self.keyframe_every}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DetectionPlan:
        keyframe = data.get("keyframe_every")
        return cls(float(data["downscale"]), float(data["min_face_px"]), None if keyframe is None else int(keyframe))


@dataclass(frozen=True)
class Tracks:
    """The ``tracks`` column: every face track, and which one decided the verdict (None: no face)."""

    frames_with_face: int
    detection: DetectionPlan | None
    worst_track: TrackId | None
    tracks: tuple[Track, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "frames_with_face": self.frames_with_face,
            "detection": None if self.detection is None else self.detection.to_json(),
            "worst_track": self.worst_track,
            "tracks": [t.to_json() for t in self.tracks],
        }


def read_tracks(data: Mapping[str, Any] | None) -> Tracks:
    """The stored ``tracks`` column (an empty or old one reads as no tracks)."""
    data = data or {}
    detection, worst = data.get("detection"), data.get("worst_track")
    return Tracks(
        frames_with_face=int(data.get("frames_with_face") or 0),
        detection=DetectionPlan.from_json(detection) if detection else None,
        worst_track=None if worst is None else int(worst),
        tracks=tuple(Track.from_json(t) for t in data.get("tracks") or ()),
    )


@dataclass(frozen=True)
class FrameCounts:
    """Frames requested by the sampler, decoded, and with a face; the requested ones that did not decode."""

    requested: int
    decoded: int
    with_face: int
    missing: tuple[int, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "requested": self.requested,
            "decoded": self.decoded,
            "with_face": self.with_face,
            "missing": list(self.missing),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FrameCounts:
        missing = tuple(int(i) for i in data.get("missing") or ())
        return cls(int(data["requested"]), int(data["decoded"]), int(data["with_face"]), missing)


@dataclass(frozen=True)
class VideoMeta:
    """The ``video`` column: the container's description of the video, and the frames the verdict rests on."""

    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    container: str | None = None
    codec: str | None = None
    frames: FrameCounts | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": self.frame_count,
            "duration_s": self.duration_s,
            "container": self.container,
            "codec": self.codec,
            # Inside the JSON `video` column: a new top-level key would need a Result column and a migration.
            "frames": None if self.frames is None else self.frames.to_json(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VideoMeta:
        frames = data.get("frames")
        return cls(
            width=int(data["width"]),
            height=int(data["height"]),
            fps=float(data["fps"]),
            frame_count=int(data["frame_count"]),
            duration_s=float(data["duration_s"]),
            container=data.get("container"),
            codec=data.get("codec"),
            frames=FrameCounts.from_json(frames) if frames else None,
        )


@dataclass(frozen=True)
class Preprocessing:
    """What one member was fed: its crop convention, input size and normalisation."""

    crop: str
    input_size: int
    normalisation: str

    def to_json(self) -> dict[str, Any]:
        return {"crop": self.crop, "input_size": self.input_size, "normalisation": self.normalisation}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Preprocessing:
        return cls(str(data["crop"]), int(data["input_size"]), str(data["normalisation"]))


@dataclass(frozen=True)
class HeatmapEntry:
    """One member's class-activation heatmap on one face crop of the worst track (an explain=true job), or why
    it could not be made: ``key`` None and ``error`` set."""

    member: str
    frame_index: int
    timestamp_s: float
    track_id: TrackId
    score: float  # the member's P(fake) on this crop
    method: str | None  # the CAM method, e.g. "gradcam" or "gradcam_vit"
    key: str | None  # the PNG's object key (the crop beside the overlay)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "member": self.member,
            "frame_index": self.frame_index,
            "timestamp_s": self.timestamp_s,
            "track_id": self.track_id,
            "score": self.score,
            "method": self.method,
            "key": self.key,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> HeatmapEntry:
        return cls(
            member=str(data["member"]),
            frame_index=int(data["frame_index"]),
            timestamp_s=float(data["timestamp_s"]),
            track_id=int(data["track_id"]),
            score=float(data["score"]),
            method=data.get("method"),
            key=data.get("key"),
            error=data.get("error"),
        )
