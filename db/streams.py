"""A live stream's rows: its session, its job (STREAMING while open, SUCCEEDED with the final result when it
closes), each scored frame as it is scored, and the stream.decision webhook rows of its decision changes.

A scored frame is written once: a worker that takes a session over may score a frame again whose write committed
just before its first worker died, and that second write changes nothing (``record_frame`` returns False).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from core.results import FrameRow, JobResult
from core.vocabulary import JobStatus, Stage, StreamStatus
from db.jobs import add_webhook
from db.models import FrameScore, Job, Result, StreamFrameRow, StreamSession
from db.session import session_scope

STREAMING_STAGE = "streaming"


@dataclass(frozen=True)
class NewStream:
    tenant: str
    api_key_id: int | None
    strategy: dict[str, Any]
    updates: str
    webhook_url: str | None
    metadata: dict[str, Any]


def open_stream(session: Session, new: NewStream) -> StreamSession:
    """The session and its job, one id for both."""
    now = datetime.now(UTC)
    job = Job(
        tenant=new.tenant,
        api_key_id=new.api_key_id,
        status=JobStatus.STREAMING.value,
        stage=STREAMING_STAGE,
        progress=0.0,
        input_key="",
        # max_frames and sampling as every job has them: a stream keeps up to its window, sampled by the client.
        params={"max_frames": int(new.strategy["window"]), "sampling": "stream", "strategy": new.strategy},
        metadata_=new.metadata,
        webhook_url=new.webhook_url,
        started_at=now,
    )
    session.add(job)
    session.flush()
    job.input_key = f"streams/{job.id}"
    stream = StreamSession(
        id=job.id,
        tenant=new.tenant,
        api_key_id=new.api_key_id,
        strategy=new.strategy,
        updates=new.updates,
        status=StreamStatus.OPEN.value,
        frames_scored=0,
        frames_with_face=0,
        frames_received=0,
        frames_dropped=0,
        decision_changes=0,
    )
    session.add(stream)
    session.flush()
    return stream


def open_count(session: Session, api_key_id: int) -> int:
    """The key's sessions not closed yet."""
    return int(
        session.scalar(
            select(func.count())
            .select_from(StreamSession)
            .where(StreamSession.api_key_id == api_key_id, StreamSession.status != StreamStatus.CLOSED.value)
        )
        or 0
    )


def tenant_stream(session: Session, tenant: str, stream_id: uuid.UUID) -> StreamSession | None:
    return session.scalar(select(StreamSession).where(StreamSession.id == stream_id, StreamSession.tenant == tenant))


@dataclass(frozen=True)
class StoredFrame:
    seq: int
    t: float
    faces: int
    scores: dict[str, float]


def stored_frames(stream_id: uuid.UUID) -> list[StoredFrame]:
    """The frames scored so far, in the order they arrived: what rebuilds the decider."""
    with session_scope() as session:
        rows = session.execute(
            select(StreamFrameRow.seq, StreamFrameRow.t, StreamFrameRow.faces, StreamFrameRow.scores)
            .where(StreamFrameRow.job_id == stream_id)
            .order_by(StreamFrameRow.seq)
        ).all()
    return [
        StoredFrame(int(seq), float(t), int(faces), {k: float(v) for k, v in (scores or {}).items()})
        for seq, t, faces, scores in rows
    ]


def hold(stream_id: uuid.UUID, worker: str) -> StreamSession | None:
    """The session as the worker that now holds it sees it (None: gone); records who holds it."""
    with session_scope() as session:
        stream = session.get(StreamSession, stream_id)
        if stream is None:
            return None
        stream.worker = worker
        session.flush()
        session.expunge(stream)
        return stream


@dataclass(frozen=True)
class ScoredFrame:
    """One frame's write: its decider input and the decision after it; ``face_rows`` its faces' frame scores."""

    seq: int
    t: float
    faces: int
    scores: dict[str, float]
    score: float | None
    verdict: str | None
    changed: bool
    face_rows: list[FrameRow]


def record_frame(
    stream_id: uuid.UUID, frame: ScoredFrame, t_low: float, t_high: float, webhook: dict[str, Any] | None
) -> tuple[bool, uuid.UUID | None]:
    """One transaction: the frame, its faces' scores, the session's decision, and (on a change, with a webhook URL)
    a stream.decision delivery. Returns (written, delivery id); written False when this frame was already stored."""
    with session_scope() as session:
        if session.get(StreamFrameRow, (stream_id, frame.seq)) is not None:
            return False, None
        session.add(
            StreamFrameRow(
                job_id=stream_id,
                seq=frame.seq,
                t=frame.t,
                faces=frame.faces,
                scores=frame.scores,
                score=frame.score,
                verdict=frame.verdict,
                changed=frame.changed,
            )
        )
        if frame.face_rows:
            session.execute(insert(FrameScore), [{"job_id": stream_id, **row.columns()} for row in frame.face_rows])
        values: dict[str, Any] = {
            "frames_scored": StreamSession.frames_scored + 1,
            "frames_with_face": StreamSession.frames_with_face + (1 if frame.faces else 0),
            "score": frame.score,
            "verdict": frame.verdict,
            "t_low": t_low,
            "t_high": t_high,
        }
        if frame.changed:
            values["decision_changes"] = StreamSession.decision_changes + 1
        session.execute(
            update(StreamSession)
            .where(StreamSession.id == stream_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
        delivery = None
        if frame.changed and webhook is not None:
            changes = session.scalar(select(StreamSession.decision_changes).where(StreamSession.id == stream_id))
            url = session.scalar(select(Job.webhook_url).where(Job.id == stream_id))
            delivery = add_webhook(session, stream_id, url, "stream.decision", webhook, sequence=int(changes or 0))
        return True, delivery


def request_close(session: Session, stream_id: uuid.UUID) -> bool:
    """OPEN -> CLOSING; False when it was not OPEN any more."""
    moved = session.execute(
        update(StreamSession)
        .where(StreamSession.id == stream_id, StreamSession.status == StreamStatus.OPEN.value)
        .values(status=StreamStatus.CLOSING.value)
        .execution_options(synchronize_session=False)
    )
    return bool(moved.rowcount)  # type: ignore[attr-defined]


def close(stream_id: uuid.UUID, result: JobResult, received: int, dropped: int, reason: str) -> bool:
    """The final decision as the job's result (status SUCCEEDED) and the session CLOSED; False if it was already."""
    now = datetime.now(UTC)
    with session_scope() as session:
        closed = session.execute(
            update(StreamSession)
            .where(StreamSession.id == stream_id, StreamSession.status != StreamStatus.CLOSED.value)
            .values(
                status=StreamStatus.CLOSED.value,
                frames_received=received,
                frames_dropped=dropped,
                close_reason=reason,
                closed_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        if not closed.rowcount:  # type: ignore[attr-defined]
            return False
        session.add(Result(job_id=stream_id, attempt=0, **result.columns()))
        session.execute(
            update(Job)
            .where(Job.id == stream_id)
            .values(
                status=JobStatus.SUCCEEDED.value,
                stage=Stage.DONE,
                progress=1.0,
                model_pack=result.model_pack,
                calibration_version=result.calibration_version,
                finished_at=now,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        )
        return True


def frame_timeline(session: Session, stream_id: uuid.UUID) -> list[StreamFrameRow]:
    """Every scored frame of a stream, in order: the decision timeline."""
    return list(
        session.scalars(select(StreamFrameRow).where(StreamFrameRow.job_id == stream_id).order_by(StreamFrameRow.seq))
    )
