"""Heatmap routes: the list of a job's class-activation heatmaps and each PNG, streamed from the object store.

The worker makes them for explain=true jobs (workers/explain); this process only reads the stored result and the
objects, so it needs neither torch nor the grad-cam package.
"""

from __future__ import annotations

from collections.abc import Iterator

from flask import Blueprint, Response, jsonify, stream_with_context
from pydantic import BaseModel, Field
from sqlalchemy import select

from api.auth import require_role
from api.errors import ApiError
from api.jobs import _tenant_job
from api.openapi import responses, spec
from api.review.media import object_size, open_range
from core.result_parts import HeatmapEntry
from core.vocabulary import JobStatus, Role
from db.models import Job, Result
from db.session import read_scope

bp = Blueprint("heatmaps", __name__, url_prefix="/v1/jobs")


class HeatmapView(BaseModel):
    """One model's heatmap on one face crop of the worst track, or why it could not be made."""

    member: str = Field(description="The model (pack member) explained.")
    frame_index: int
    timestamp_s: float
    track_id: int
    score: float = Field(description="The model's P(fake) on this crop.")
    method: str | None = Field(description="gradcam, gradcam_vit (patch tokens) or gradcam_cnn_branch.")
    error: str | None = Field(description="Why this model could not be explained (url is null then).")
    url: str | None = Field(description="The PNG: the crop the model saw, and beside it the heatmap blended in.")


class HeatmapList(BaseModel):
    job_id: str
    heatmaps: list[HeatmapView] = Field(description="In order: heatmap n is at /v1/jobs/{id}/heatmaps/{n}.png.")


def _view(job: Job, n: int, entry: HeatmapEntry) -> dict[str, object]:
    url = None if entry.key is None else f"/v1/jobs/{job.id}/heatmaps/{n}.png"
    json = entry.to_json()
    del json["key"]  # the object key is the store's business; clients follow the url
    return {**json, "url": url}


def _finished_heatmaps(job_id: str) -> tuple[Job, list[HeatmapEntry]]:
    """The caller's tenant's job and its heatmap entries; 409 until it SUCCEEDED."""
    with read_scope() as session:
        job = _tenant_job(session, job_id)
        result = session.scalar(select(Result).where(Result.job_id == job.id))
        if job.status != JobStatus.SUCCEEDED or result is None:
            raise ApiError(409, "RESULT_NOT_READY", f"heatmaps need a finished result; the job is {job.status}")
        return job, [HeatmapEntry.from_json(h) for h in result.heatmaps or ()]


@bp.get("/<job_id>/heatmaps")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: HeatmapList}, 404, 409), tags=["jobs"])
def list_heatmaps(job_id: str) -> Response:
    """Class-activation heatmaps of the face crops that decided the verdict (the worst track's highest-scoring
    frames, a few per model), for a job submitted with explain=true (or under VERITY_EXPLAIN_DEFAULT); empty
    otherwise. 409 until SUCCEEDED.
    Role: submitter."""
    job, entries = _finished_heatmaps(job_id)
    return jsonify({"job_id": str(job.id), "heatmaps": [_view(job, n, e) for n, e in enumerate(entries)]})


@bp.get("/<job_id>/heatmaps/<n>.png")
@require_role(Role.SUBMITTER)
@spec.validate(resp=responses({200: None}, 404, 409, media={200: "image/png"}), tags=["jobs"])
def heatmap_png(job_id: str, n: str) -> Response:
    """Heatmap ``n`` of the list: the model's crop and its heatmap overlay side by side, with a legend.
    Role: submitter."""
    _, entries = _finished_heatmaps(job_id)
    # ASCII digits only: str.isdigit() also accepts digits int() refuses ("²").
    index = int(n) if n.isascii() and n.isdigit() else len(entries)
    key = entries[index].key if index < len(entries) else None
    if key is None:
        raise ApiError(404, "NOT_FOUND", f"the job has no heatmap image {n}")
    size = object_size(key)
    body: Iterator[bytes] = open_range(key, 0, size) if size else iter(())
    response = Response(stream_with_context(body), mimetype="image/png")
    response.headers["Cache-Control"] = "private, max-age=3600"
    response.content_length = size
    return response
