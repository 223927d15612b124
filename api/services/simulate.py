"""One tenant's labelled stored jobs as the live-stream simulator's videos (core.streams.simulate), with the
members, fusion and calibration version they are replayed under. No Flask, no torch.

Labels come from moderator feedback (the majority of current REAL/FAKE labels, as recalibration reads them) or,
when the caller sends label rows (a CSV's), from those: by job id, or by file name or sha256 (every job of the
tenant with that name or content).
"""

from __future__ import annotations

import statistics
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.manifest import ManifestError, read_manifest
from core.pack_defaults import PackDefaults
from core.results import read_per_model
from core.scoring.verdict import CalibrationState, MemberSpec
from core.streams.simulate import LabelledVideo, Scoring, VideoFrame
from core.streams.thresholds import stored_per_frame_thresholds
from core.vocabulary import Label
from db.calibrations import CalibrationNotFound, SqlCalibrationStore, tenant_labels, version_spec
from db.models import Calibration, FrameScore, Job, Result

NO_CALIBRATION = "none"
FEEDBACK, LABEL_ROWS = "feedback", "labels"
# Stages of a whole-file job that a stream pays per frame too (decoding and download are the file's own).
_PER_FRAME_STAGES = ("faces", "tracks", "crops", "fusion")
_CHUNK = 1000


@dataclass(frozen=True)
class LabelRow:
    """One row of a labels CSV: a job id, a file name or a sha256, and its label."""

    label: Label
    job_id: str | None = None
    filename: str | None = None
    sha256: str | None = None

    def __post_init__(self) -> None:
        if self.label not in (Label.REAL, Label.FAKE):
            raise ValueError(f"a label must be REAL or FAKE, got {self.label}")
        if sum(v is not None for v in (self.job_id, self.filename, self.sha256)) != 1:
            raise ValueError("each label row names exactly one of job_id, filename or sha256")

    @property
    def key(self) -> str:
        return str(self.job_id or self.filename or self.sha256)


@dataclass(frozen=True)
class SimulationData:
    """What the simulator runs on. ``without_frame_scores``: labelled jobs left out for having no stored frame
    scores; ``unmatched_labels``: label rows that named no job of the tenant; ``per_frame_ms``: the stored jobs'
    median cost of face detection, tracking, crops, models and fusion per sampled frame (batched, so a live
    stream's is higher), None when no job recorded it."""

    videos: list[LabelledVideo]
    scoring: Scoring
    label_source: str
    calibration_version: str | None
    per_frame_ms: float | None
    without_frame_scores: int
    unmatched_labels: list[str]


class SimulationInputError(ValueError):
    """The request names something the tenant does not have (the message says what)."""


def _row_labels(session: Session, tenant: str, rows: Sequence[LabelRow]) -> tuple[dict[uuid.UUID, str], list[str]]:
    labels: dict[uuid.UUID, str] = {}
    unmatched: list[str] = []
    for row in rows:
        query = select(Job.id).where(Job.tenant == tenant)
        if row.job_id is not None:
            try:
                query = query.where(Job.id == uuid.UUID(row.job_id))
            except ValueError:
                unmatched.append(row.key)
                continue
        else:
            # Only the column the row names: `== None` would match every job missing the other one.
            query = query.where(Job.filename == row.filename if row.filename is not None else Job.sha256 == row.sha256)
        found = list(session.scalars(query))
        if not found:
            unmatched.append(row.key)
        labels.update({job_id: row.label.value for job_id in found})
    return labels, unmatched


def _frames(session: Session, job_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[VideoFrame]]:
    """Each job's sampled frames with a face: track id -> model -> P(fake), in time order."""
    by_job: dict[uuid.UUID, dict[int, tuple[float, dict[int, dict[str, float]]]]] = {}
    rows = session.execute(
        select(
            FrameScore.job_id,
            FrameScore.frame_index,
            FrameScore.timestamp_s,
            FrameScore.track_id,
            FrameScore.model,
            FrameScore.score,
        ).where(FrameScore.job_id.in_(job_ids))
    )
    for job_id, index, t, track_id, model, score in rows:
        frame = by_job.setdefault(job_id, {}).setdefault(index, (float(t), {}))
        frame[1].setdefault(int(track_id), {})[model] = float(score)
    return {
        job_id: [VideoFrame(t, faces) for _, (t, faces) in sorted(frames.items())] for job_id, frames in by_job.items()
    }


def _per_frame_ms(timings: Sequence[tuple[Mapping[str, Any], int]]) -> float | None:
    costs = []
    for stages, frames in timings:
        spent = [float(v) for k, v in stages.items() if k in _PER_FRAME_STAGES or k.startswith("model:")]
        if frames > 0 and spent:
            costs.append(1000.0 * sum(spent) / frames)
    return statistics.median(costs) if costs else None


def _members(manifest_path: Path, pack: PackDefaults, per_model: Sequence[Mapping[str, Any]]) -> list[MemberSpec]:
    """The pack's members (aggregator and base weight) that scored these jobs; when the pack has none of
    them, the members as the stored results recorded them."""
    scored = {name for entry in per_model for name in entry}
    try:
        members = [
            MemberSpec(m.name, m.aggregator, m.weight) for m in read_manifest(manifest_path).members if m.name in scored
        ]
    except ManifestError:
        members = []
    if members:
        return members
    stored: dict[str, MemberSpec] = {}
    for entry in per_model:
        for name, model in read_per_model(entry).items():
            stored.setdefault(name, MemberSpec(name, model.aggregator or "mean", pack.weights.get(name, 1.0)))
    return [stored[name] for name in sorted(stored)]


def _calibration(
    session: Session, version: str | None
) -> tuple[Calibration | None, CalibrationState, dict[str, tuple[float, float]]]:
    if version == NO_CALIBRATION:
        return None, CalibrationState(None, {}, {}, frozenset()), {}
    store = SqlCalibrationStore(session)
    row = store.active() if version is None else store.get(version)
    if row is None and version is not None:
        raise CalibrationNotFound(version)
    if row is None:
        return None, CalibrationState(None, {}, {}, frozenset()), {}
    return row, version_spec(row).state, stored_per_frame_thresholds(row.thresholds)


def load(
    session: Session,
    tenant: str,
    manifest_path: Path,
    pack: PackDefaults,
    labels: Sequence[LabelRow] | None = None,
    version: str | None = None,
    max_videos: int = 500,
) -> SimulationData:
    """The tenant's labelled jobs (newest first, at most ``max_videos``) with stored frame scores, under
    ``version`` (None: the active one; "none": no calibration). CalibrationNotFound for an unknown version."""
    row, state, per_frame = _calibration(session, version)
    fusion = pack.fusion if row is None else version_spec(row).fusion_spec(pack.fusion)
    unmatched: list[str] = []
    if labels is None:
        by_job, source = tenant_labels(session, tenant), FEEDBACK
    else:
        (by_job, unmatched), source = _row_labels(session, tenant, labels), LABEL_ROWS
    ordered = list(
        session.execute(
            select(Job.id, Job.filename, Result.per_model, Result.timings, Result.frames_sampled)
            .join(Result, Result.job_id == Job.id)
            .where(Job.tenant == tenant, Job.id.in_(list(by_job)))
            .order_by(Job.created_at.desc(), Job.id)
        )
    )
    # Newest first, a chunk at a time, until enough jobs with frame scores are found.
    frames: dict[uuid.UUID, list[VideoFrame]] = {}
    scored: list[Any] = []
    without = 0
    for start in range(0, len(ordered), _CHUNK):
        if len(scored) >= max_videos:
            break
        chunk = ordered[start : start + _CHUNK]
        frames.update(_frames(session, [job_id for job_id, *_ in chunk]))
        with_frames = [r for r in chunk if frames.get(r[0])]
        without += len(chunk) - len(with_frames)
        scored.extend(with_frames[: max_videos - len(scored)])
    members = _members(manifest_path, pack, [per_model for _, _, per_model, _, _ in scored])
    names = {m.name for m in members}
    videos = [
        LabelledVideo(
            str(job_id),
            int(by_job[job_id] == Label.FAKE.value),
            # Models outside the members (another pack's) have no place in this replay.
            [
                VideoFrame(f.t, {tid: {m: s for m, s in face.items() if m in names} for tid, face in f.faces.items()})
                for f in frames[job_id]
            ],
            filename,
        )
        for job_id, filename, _, _, _ in scored
    ]
    return SimulationData(
        videos=videos,
        scoring=Scoring(members, fusion, state, per_frame),
        label_source=source,
        calibration_version=None if row is None else row.version,
        per_frame_ms=_per_frame_ms([(timings or {}, frames_sampled) for _, _, _, timings, frames_sampled in scored]),
        without_frame_scores=without,
        unmatched_labels=unmatched,
    )
