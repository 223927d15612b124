"""Webhook event bodies (Standard Webhooks shape: type, timestamp, data)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from core.results import JobResult


def _envelope(event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": data}


def succeeded(job_id: uuid.UUID, result: JobResult) -> dict[str, Any]:
    models = {
        name: {"score": m.calibrated, "weight": m.weight, "error": m.error} for name, m in result.per_model.items()
    }
    return _envelope(
        "job.succeeded",
        {
            "job_id": str(job_id),
            "status": "SUCCEEDED",
            "media": result.media.value,
            "verdict": result.verdict.value,
            "score": result.score,
            "thresholds": {"t_low": result.t_low, "t_high": result.t_high},
            "method": result.method,
            "models": models,
            "model_pack": result.model_pack,
            "test_pack": result.test_pack,
            "calibration_version": result.calibration_version,
            # Why the verdict is NOT_APPLICABLE (core/scope.py); null when the pack could judge the media.
            "scope": None if result.signals is None else result.signals.scope,
            "result_url": f"/v1/jobs/{job_id}/result",
        },
    )


def failed(job_id: uuid.UUID, code: str, message: str) -> dict[str, Any]:
    return _envelope(
        "job.failed",
        {"job_id": str(job_id), "status": "FAILED", "error": {"code": code, "message": message}},
    )


def batch_completed(batch_id: uuid.UUID, counts: dict[str, int], total: int) -> dict[str, Any]:
    """Sent once, when the batch's last item reaches a terminal status; per-item results are at the batch URL."""
    return _envelope(
        "batch.completed",
        {
            "batch_id": str(batch_id),
            "status": "COMPLETED",
            "total": total,
            "counts": counts,
            "batch_url": f"/v1/batches/{batch_id}",
        },
    )


def stream_decision(stream_id: uuid.UUID, decision: dict[str, Any]) -> dict[str, Any]:
    """Sent when a live stream's decision changes (the first decision included), never for a frame that kept it."""
    return _envelope(
        "stream.decision",
        {"stream_id": str(stream_id), "job_id": str(stream_id), **decision, "stream_url": f"/v1/streams/{stream_id}"},
    )
