"""Pydantic models of the batch routes (api/batches.py): request validation and the OpenAPI document, as in
api/schemas.py, whose field types they share."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from werkzeug.datastructures import FileStorage

from api.schemas import MAX_FRAMES_LIMIT, JobLinks, JsonObjectText, UploadFile
from core.vocabulary import BatchStatus, JobStatus, SamplingStrategy, Verdict


def _file_parts(value: Any) -> list[FileStorage]:
    """One part arrives as itself, several as a list (spectree's form reading); each must be a file part."""
    parts = value if isinstance(value, list) else [value]
    if not all(isinstance(part, FileStorage) for part in parts):
        raise ValueError("each must be a file part of a multipart/form-data body")
    return parts


class BatchForm(BaseModel):
    """multipart/form-data body of POST /v1/batches: several parts named ``file``, one job each, with the same
    options. Unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    file: Annotated[list[UploadFile], BeforeValidator(_file_parts)] = Field(
        description="The files, each a part named file (at most VERITY_MAX_BATCH_ITEMS); checked as POST /v1/jobs "
        "checks one, and the whole batch is refused if any is."
    )
    webhook_url: str | None = Field(
        None, max_length=2048, description="http(s) URL to receive one batch.completed webhook when every item ended."
    )
    per_item_webhooks: bool = Field(
        False, description="true: each item's job also sends job.succeeded / job.failed to webhook_url."
    )
    max_frames: int | None = Field(None, ge=1, le=MAX_FRAMES_LIMIT, description="Frames to sample, for every item.")
    sampling: SamplingStrategy = Field(SamplingStrategy.UNIFORM, description="Frame sampling strategy.")
    metadata: JsonObjectText = Field(None, description="A JSON object (as text) stored with every item's job.")


class BatchItemView(BaseModel):
    job_id: str
    filename: str | None
    status: JobStatus
    verdict: Verdict | None = Field(description="Set once the item SUCCEEDED.")
    score: float | None
    error: str | None = Field(description="The error code of an item that FAILED.")
    links: JobLinks


class BatchLinks(BaseModel):
    self_: str = Field(alias="self")


class BatchView(BaseModel):
    id: str
    status: BatchStatus = Field(description="QUEUED, RUNNING, or COMPLETED once every item is terminal.")
    total: int
    counts: dict[str, int] = Field(description="Items per job status, every status present.")
    items: list[BatchItemView] = Field(description="In submission order; results at each item's links.result.")
    webhook_url: str | None
    per_item_webhooks: bool
    idempotency_key: str | None
    created_at: datetime
    completed_at: datetime | None
    links: BatchLinks
