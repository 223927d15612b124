"""A job's result as one typed value, from the pipeline to the database, the webhook and the API view.

The pipeline builds a :class:`JobResult`; this module holds the only mappings of it: to the ``results`` and
``frame_scores`` columns (:meth:`JobResult.columns`, :meth:`FrameRow.columns`), back from stored columns
(:meth:`JobResult.from_columns`, :meth:`JobResult.from_row`), to the API view (:meth:`JobResult.view`) and,
in core/payloads.py, to the webhook body. Track ids are ``int`` throughout; JSON carries them as numbers in
lists, never as object keys, so no reader has to try both types.

Readers of stored rows are lenient where older rows lack a part (frame counts, the detection plan, per-model
preprocessing, the video itself): that part reads as None or empty, never as an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from core.result_parts import (
    Box,
    DetectionPlan,
    FrameCounts,
    HeatmapEntry,
    Preprocessing,
    Track,
    TrackDetection,
    TrackId,
    Tracks,
    VideoMeta,
    opt_float,
    read_tracks,
)
from core.scoring.override import Override
from core.scoring.verdict import ModelScore
from core.signals import SignalReport
from core.vocabulary import MediaKind, Verdict

__all__ = [
    "RESULT_COLUMNS",
    "Box",
    "DetectionPlan",
    "FrameCounts",
    "FrameRow",
    "HeatmapEntry",
    "JobResult",
    "ModelScore",
    "Override",
    "Preprocessing",
    "SignalReport",
    "Track",
    "TrackDetection",
    "TrackId",
    "Tracks",
    "VideoMeta",
    "read_overrides",
    "read_per_model",
    "read_tracks",
]

# The ``results`` columns a JobResult fills (the row's id, job_id, attempt and created_at are the database's).
RESULT_COLUMNS = (
    "verdict",
    "score",
    "raw_score",
    "method",
    "t_low",
    "t_high",
    "per_model",
    "tracks",
    "overrides",
    "faces_found",
    "frames_sampled",
    "timings",
    "video",
    "preprocessing",
    "model_pack",
    "test_pack",
    "calibration_version",
    "signals",
    "heatmaps",
)


def _model_score(data: Mapping[str, Any]) -> ModelScore:
    return ModelScore(
        aggregator=str(data.get("aggregator", "")),
        weight=float(data.get("weight") or 0.0),
        frames=int(data.get("frames") or 0),
        aggregated=opt_float(data.get("aggregated")),
        calibrated=opt_float(data.get("calibrated")),
        error=data.get("error"),
    )


def read_per_model(data: Mapping[str, Any] | None) -> dict[str, ModelScore]:
    """The stored ``per_model`` column: each member's score on the worst track, or its error."""
    return {name: _model_score(entry) for name, entry in (data or {}).items()}


def read_overrides(data: Mapping[str, Any] | None) -> tuple[Override, ...]:
    """The stored ``overrides`` column: the changes applied to the fused score, in order."""
    return tuple(Override(**o) for o in (data or {}).get("applied") or ())


@dataclass(frozen=True)
class FrameRow:
    """One ``frame_scores`` row: one model's P(fake) for one face in one sampled frame."""

    frame_index: int
    timestamp_s: float
    track_id: TrackId
    box: Box
    face_prob: float
    model: str
    score: float

    def columns(self) -> dict[str, Any]:
        return {
            "frame_index": self.frame_index,
            "timestamp_s": self.timestamp_s,
            "track_id": self.track_id,
            "box": self.box.to_json(),
            "face_prob": self.face_prob,
            "model": self.model,
            "score": self.score,
        }

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> FrameRow:
        return cls(
            frame_index=int(columns["frame_index"]),
            timestamp_s=float(columns["timestamp_s"]),
            track_id=int(columns["track_id"]),
            box=Box.from_json(columns["box"]),
            face_prob=float(columns["face_prob"]),
            model=str(columns["model"]),
            score=float(columns["score"]),
        )


@dataclass(frozen=True)
class JobResult:
    """A finished detection: the verdict, its scores and the evidence behind them."""

    verdict: Verdict
    score: float | None
    raw_score: float | None
    method: str | None
    t_low: float | None
    t_high: float | None
    frames_sampled: int
    faces_found: int
    tracks: Tracks
    per_model: Mapping[str, ModelScore] = field(default_factory=dict)
    overrides: tuple[Override, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    video: VideoMeta | None = None
    preprocessing: Mapping[str, Preprocessing] = field(default_factory=dict)
    model_pack: str | None = None
    test_pack: bool = False
    calibration_version: str | None = None
    media: MediaKind = MediaKind.VIDEO
    signals: SignalReport | None = None  # the forensic signals (core/signals.py); None: not computed (older rows)
    heatmaps: tuple[HeatmapEntry, ...] = ()  # explain=true jobs only: read through GET /v1/jobs/<id>/heatmaps

    def _json_parts(self) -> dict[str, Any]:
        """The JSON of every part, shared by the columns and the view (which differ only in a few names)."""
        return {
            "per_model": {name: m.to_dict() for name, m in self.per_model.items()},
            "tracks": self.tracks.to_json(),
            "overrides": [o.to_dict() for o in self.overrides],
            "timings": dict(self.timings),
            "video": None if self.video is None else self.video.to_json(),
            "preprocessing": {name: p.to_json() for name, p in self.preprocessing.items()},
            "signals": None if self.signals is None else self.signals.to_json(),
        }

    def _common(self, parts: Mapping[str, Any]) -> dict[str, Any]:
        """The values the ``results`` row and the API view hold under the same names."""
        return {
            "verdict": self.verdict.value,
            "score": self.score,
            "raw_score": self.raw_score,
            "method": self.method,
            "tracks": parts["tracks"],
            "faces_found": self.faces_found,
            "frames_sampled": self.frames_sampled,
            "timings": parts["timings"],
            "preprocessing": parts["preprocessing"],
            "model_pack": self.model_pack,
            "test_pack": self.test_pack,
            "calibration_version": self.calibration_version,
        }

    def columns(self) -> dict[str, Any]:
        """The ``results`` row's values (``Result(job_id=..., attempt=..., **result.columns())``)."""
        parts = self._json_parts()
        return {
            **self._common(parts),
            "t_low": self.t_low,
            "t_high": self.t_high,
            "per_model": parts["per_model"],
            "overrides": {"applied": parts["overrides"]},
            # Inside the JSON `video` column, so no migration: the column is NOT NULL, and `media` is its only key
            # when there is no video metadata.
            "video": {**(parts["video"] or {}), "media": self.media.value},
            "signals": parts["signals"] or {},  # NOT NULL: {} when none were computed
            "heatmaps": [h.to_json() for h in self.heatmaps],
        }

    def view(self) -> dict[str, Any]:
        """The API's result view (api.schemas.ResultView) less ``job_id`` and ``created_at``, the row's own."""
        parts = self._json_parts()
        return {
            **self._common(parts),
            "thresholds": {"t_low": self.t_low, "t_high": self.t_high},
            "models": parts["per_model"],
            "overrides": parts["overrides"],
            "video": parts["video"],
            "media": self.media.value,
            "signals": parts["signals"],
        }

    @classmethod
    def from_columns(cls, columns: Mapping[str, Any]) -> JobResult:
        """A stored result, from its ``results`` column values (the inverse of :meth:`columns`)."""
        video = dict(columns.get("video") or {})
        media = MediaKind(video.pop("media", MediaKind.VIDEO))  # older rows are all videos
        return cls(
            verdict=Verdict(columns["verdict"]),
            score=opt_float(columns.get("score")),
            raw_score=opt_float(columns.get("raw_score")),
            method=columns.get("method"),
            t_low=opt_float(columns.get("t_low")),
            t_high=opt_float(columns.get("t_high")),
            frames_sampled=int(columns.get("frames_sampled") or 0),
            faces_found=int(columns.get("faces_found") or 0),
            tracks=read_tracks(columns.get("tracks")),
            per_model=read_per_model(columns.get("per_model")),
            overrides=read_overrides(columns.get("overrides")),
            timings={stage: float(s) for stage, s in (columns.get("timings") or {}).items()},
            video=VideoMeta.from_json(video) if video else None,
            preprocessing={n: Preprocessing.from_json(p) for n, p in (columns.get("preprocessing") or {}).items()},
            model_pack=columns.get("model_pack"),
            test_pack=bool(columns.get("test_pack")),
            calibration_version=columns.get("calibration_version"),
            media=media,
            signals=SignalReport.from_json(columns.get("signals")),
            heatmaps=tuple(HeatmapEntry.from_json(h) for h in columns.get("heatmaps") or ()),
        )

    @classmethod
    def from_row(cls, row: object) -> JobResult:
        """A stored result from anything with the ``results`` columns as attributes (a db.models.Result)."""
        return cls.from_columns({name: getattr(row, name) for name in RESULT_COLUMNS})
