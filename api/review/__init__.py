"""The moderator review page (``/review``) and the routes it reads.

Sign-in: the moderator pastes a key; the page keeps it in ``sessionStorage`` (this tab only, gone when it
closes) and calls the public API with ``Authorization: Bearer``, exactly as an integrator would — feedback
goes through ``POST /v1/jobs/<id>/feedback``, no second write path. Nothing authenticates by cookie, so a
forged cross-site request carries no credentials and there is nothing for CSRF to ride on. The key is then
readable by script on this origin, so the pages allow only their own script (a strict CSP, no inline code)
and the JS writes data with ``textContent``, never as HTML.

``<video>`` cannot send a Bearer header, so the page asks ``GET /v1/jobs/<id>/video-url`` for a short-lived
URL signed for that one job (HMAC with a key derived from the deployment's webhook secret); the timeline
PNG is small and fetched with the header into a ``blob:`` URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from flask import Blueprint, Response, current_app, render_template, request, stream_with_context
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import current_key, require_role
from api.errors import ApiError
from api.jobs import _parse_job_id, _tenant_job
from api.review.media import (
    FaceScores,
    ObjectRange,
    downloaded,
    frames_sheet,
    object_size,
    open_range,
)
from api.serialize import feedback_view, iso, job_view, result_view
from core.settings import Settings
from core.vocabulary import FeedbackCategory, JobStatus, Label, Role
from db import streams
from db.models import Calibration, Feedback, FrameScore, Job, Result, StreamSession
from db.session import session_scope

bp = Blueprint(
    "review", __name__, template_folder="templates", static_folder="static", static_url_path="/review/static"
)

MEDIA_URL_TTL_S = 600
SHEET_FRAMES = 8
QUEUE_LIMIT = 50
_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; media-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Content-Security-Policy", _CSP)
    response.headers.setdefault("Referrer-Policy", "no-referrer")  # media URLs carry a token
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


# --- pages (no data: the script fetches it with the moderator's key) --------------------------------


@bp.get("/review")
def queue_page() -> str:
    return render_template("review/queue.html")


@bp.get("/review/jobs/<job_id>")
def job_page(job_id: str) -> str:
    labels, categories = [v.value for v in Label], [v.value for v in FeedbackCategory]
    return render_template("review/job.html", job_id=job_id, labels=labels, categories=categories)


# --- JSON for the pages ---------------------------------------------------------------------------


def _labels_by_job(session: Session, job_ids: list[uuid.UUID]) -> dict[uuid.UUID, list[dict[str, Any]]]:
    out: dict[uuid.UUID, list[dict[str, Any]]] = {}
    if job_ids:
        rows = session.scalars(select(Feedback).where(Feedback.job_id.in_(job_ids), Feedback.is_current.is_(True)))
        for f in rows:
            out.setdefault(f.job_id, []).append({"label": f.label, "mine": f.api_key_id == current_key().id})
    return out


def _queue_item(job: Job, result: Result | None, labels: list[dict[str, Any]]) -> dict[str, Any]:
    mine = next((x["label"] for x in labels if x["mine"]), None)
    return {
        "id": str(job.id),
        "filename": job.filename,
        "status": job.status,
        "created_at": iso(job.created_at),
        "verdict": result.verdict if result else None,
        "score": result.score if result else None,
        "calibration_version": result.calibration_version if result else job.calibration_version,
        "labels": dict(Counter(x["label"] for x in labels)),
        "my_label": mine,
    }


@bp.get("/v1/review/queue")
@require_role(Role.MODERATOR)
def review_queue() -> dict[str, Any]:
    """UNCERTAIN jobs (unlabelled first, then newest) and the newest jobs of the caller's tenant."""
    tenant = current_key().tenant
    with session_scope() as session:
        uncertain = session.execute(
            select(Job, Result)
            .join(Result, Result.job_id == Job.id)
            .where(Job.tenant == tenant, Result.verdict == "UNCERTAIN")
            .order_by(Job.created_at.desc())
            .limit(QUEUE_LIMIT)
        ).all()
        recent = session.execute(
            select(Job, Result)
            .outerjoin(Result, Result.job_id == Job.id)
            .where(Job.tenant == tenant)
            .order_by(Job.created_at.desc(), Job.id.desc())
            .limit(QUEUE_LIMIT)
        ).all()
        labels = _labels_by_job(session, list({j.id for j, _ in [*uncertain, *recent]}))
        to_review = [_queue_item(j, r, labels.get(j.id, [])) for j, r in uncertain]
        to_review.sort(key=lambda item: bool(item["labels"]))  # stable: unlabelled first, each part newest first
        return {"uncertain": to_review, "recent": [_queue_item(j, r, labels.get(j.id, [])) for j, r in recent]}


@bp.get("/v1/review/jobs/<job_id>")
@require_role(Role.MODERATOR)
def review_job(job_id: str) -> dict[str, Any]:
    """The job, its result (null until SUCCEEDED) and every label moderators of this tenant gave it."""
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        result = session.scalar(select(Result).where(Result.job_id == job.id))
        history = session.scalars(
            select(Feedback).where(Feedback.job_id == job.id).order_by(Feedback.created_at.desc(), Feedback.id.desc())
        )
        me = current_key().id
        return {
            "job": job_view(job),
            "result": result_view(result) if result else None,
            "feedback": [{**feedback_view(f), "mine": f.api_key_id == me} for f in history],
            "stream": _stream_timeline(session, job.id),
        }


def _stream_timeline(session: Session, job_id: uuid.UUID) -> dict[str, Any] | None:
    """A live stream's decision over time (None for a file's job): each scored frame's score and verdict, which
    frames changed it, and the thresholds it was decided with."""
    stream = session.get(StreamSession, job_id)
    if stream is None:
        return None
    frames = [
        {"seq": f.seq, "t": f.t, "score": f.score, "verdict": f.verdict, "changed": f.changed}
        for f in streams.frame_timeline(session, job_id)
    ]
    return {"status": stream.status, "t_low": stream.t_low, "t_high": stream.t_high, "frames": frames}


@bp.get("/v1/review/calibration")
@require_role(Role.MODERATOR)
def review_calibration() -> dict[str, Any]:
    """What a moderator may see of the active calibration (admins get everything at /v1/calibrations): its
    version, what it was fitted on, and the held-out metrics before and after it."""
    with session_scope() as session:
        row = session.scalar(select(Calibration).where(Calibration.status == "active").limit(1))
        if row is None:
            return {"active": None}
        held_out = row.metrics.get("held_out") or {}
        fitted = row.fitted_on or {}
        return {
            "active": {
                "version": row.version,
                "activated_at": iso(row.activated_at),
                "created_at": iso(row.created_at),
                "method": (row.fusion or {}).get("method"),
                "thresholds": row.thresholds,
                "fitted_on": {k: fitted.get(k) for k in ("labels", "REAL", "FAKE", "train", "held_out")},
                "held_out": {
                    "jobs": held_out.get("jobs"),
                    "before_version": held_out.get("before_version"),
                    "before": held_out.get("before"),
                    "after": held_out.get("after"),
                },
                "better": row.metrics.get("better"),
                "better_reasons": row.metrics.get("better_reasons", []),
            }
        }


@bp.get("/v1/jobs/<job_id>/timeline.png")
@require_role(Role.SUBMITTER)
def timeline(job_id: str) -> Response:
    """Per-frame P(fake) per model and track, the thresholds drawn in (core/plots.py: matplotlib only)."""
    from core.plots import timeline_png

    with session_scope() as session:
        job = _tenant_job(session, job_id)
        result = session.scalar(select(Result).where(Result.job_id == job.id))
        if job.status != JobStatus.SUCCEEDED or result is None:
            raise ApiError(409, "RESULT_NOT_READY", f"the timeline needs a finished result; the job is {job.status}")
        rows = session.execute(
            select(FrameScore.timestamp_s, FrameScore.track_id, FrameScore.model, FrameScore.score)
            .where(FrameScore.job_id == job.id)
            .order_by(FrameScore.model, FrameScore.track_id, FrameScore.frame_index)
        ).mappings()
        score = "" if result.score is None else f" {result.score:.2f}"
        png = timeline_png(
            [dict(r) for r in rows],
            0.5 if result.t_low is None else result.t_low,
            0.5 if result.t_high is None else result.t_high,
            f"{job.filename or job.id}: {result.verdict}{score}",
        )
    return Response(png, mimetype="image/png", headers={"Cache-Control": "private, max-age=300"})


@bp.get("/v1/jobs/<job_id>/frames.jpg")
@require_role(Role.SUBMITTER)
def frames(job_id: str) -> Response:
    """Up to ``SHEET_FRAMES`` of the sampled frames that had a face, with the scored boxes: what the detectors
    saw. The object is downloaded and decoded for it (PyAV, no torch), so the response is cached."""
    from core.media.decode import read_frames

    with session_scope() as session:
        job = _tenant_job(session, job_id)
        rows = session.execute(
            select(FrameScore.frame_index, FrameScore.track_id, FrameScore.box, FrameScore.model, FrameScore.score)
            .where(FrameScore.job_id == job.id)
            .order_by(FrameScore.frame_index, FrameScore.track_id)
        ).all()
        input_key = job.input_key
    faces: dict[int, dict[int, FaceScores]] = {}
    for index, track, box, model, score in rows:
        face = faces.setdefault(index, {}).setdefault(
            track, FaceScores(track, (box["x1"], box["y1"], box["x2"], box["y2"]), {})
        )
        face.scores[model] = score
    if not faces:
        raise ApiError(409, "NO_FRAMES", "no scored face frames: the job has not finished or found no face")
    indices = sorted(faces)
    step = max(1, -(-len(indices) // SHEET_FRAMES))
    chosen = indices[::step][:SHEET_FRAMES]
    with downloaded(input_key, "verity-frames-") as path:
        decoded = read_frames(path, chosen)
    jpeg = frames_sheet([(f.timestamp_s, f.image) for f in decoded], [list(faces[f.index].values()) for f in decoded])
    return Response(jpeg, mimetype="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})


# --- the video: Bearer or a signed URL, with HTTP Range --------------------------------------------


def _settings() -> Settings:
    settings: Settings = current_app.config["VERITY_SETTINGS"]
    return settings


def _media_key() -> bytes:
    # Domain-separated from the webhook signatures: a media token can never verify as anything else.
    return hmac.new(_settings().webhook_secret.encode(), b"verity/review-media-url/v1", hashlib.sha256).digest()


def _media_signature(job_id: str, expires: int) -> str:
    mac = hmac.new(_media_key(), f"{job_id}:{expires}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def _valid_token(job_id: str, token: str) -> bool:
    # ASCII first: str.isdigit() accepts digits int() refuses ("²"), and compare_digest refuses non-ASCII str.
    if not token.isascii():
        return False
    expires_raw, _, signature = token.partition(".")
    if not expires_raw.isdigit() or int(expires_raw) < time.time():
        return False
    return hmac.compare_digest(signature.encode(), _media_signature(job_id, int(expires_raw)).encode())


@bp.get("/v1/jobs/<job_id>/video-url")
@require_role(Role.SUBMITTER)
def video_url(job_id: str) -> dict[str, Any]:
    with session_scope() as session:
        job = _tenant_job(session, job_id)
        canonical = str(job.id)
    expires = int(time.time()) + MEDIA_URL_TTL_S
    token = f"{expires}.{_media_signature(canonical, expires)}"
    return {
        "url": f"/v1/jobs/{canonical}/video?token={token}",
        "expires_at": datetime.fromtimestamp(expires, UTC).isoformat(),
    }


def _video_job(job_id: str) -> Job:
    token = request.args.get("token")
    if token is None:
        return _authenticated_video_job(job_id)
    with session_scope() as session:
        job = session.scalar(select(Job).where(Job.id == _parse_job_id(job_id)))
        if job is None or not _valid_token(str(job.id), token):
            raise ApiError(401, "UNAUTHENTICATED", "the media URL is invalid or expired; ask for a new one")
        return job


@require_role(Role.SUBMITTER)  # the usual key check, applied only when the URL carries no token
def _authenticated_video_job(job_id: str) -> Job:
    with session_scope() as session:
        return _tenant_job(session, job_id)


@bp.get("/v1/jobs/<job_id>/video")
def video(job_id: str) -> Response:
    """The uploaded object, streamed from storage; ``Range: bytes=a-b`` answers 206 (players seek with it)."""
    job = _video_job(job_id)
    size = object_size(job.input_key)
    headers = {
        "Accept-Ranges": "bytes",
        "Cache-Control": "private, max-age=600",
        "Content-Disposition": "inline",
    }
    wanted = request.range
    span: ObjectRange = (0, size)
    status = 200
    if wanted is not None:
        found = wanted.range_for_length(size)
        if found is None:
            return Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
        span, status = found, 206
        headers["Content-Range"] = f"bytes {span[0]}-{span[1] - 1}/{size}"
    body: Iterator[bytes] = open_range(job.input_key, *span) if span[1] > span[0] else iter(())
    response = Response(
        stream_with_context(body), status=status, mimetype=job.content_type or "application/octet-stream"
    )
    response.headers.update(headers)
    response.content_length = span[1] - span[0]
    return response
