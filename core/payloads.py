"""Webhook event bodies (Standard Webhooks shape: type, timestamp, data)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any


def _envelope(event: str, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": event, "timestamp": datetime.now(UTC).isoformat(), "data": data}


def succeeded(job_id: uuid.UUID, result: dict[str, Any]) -> dict[str, Any]:
    models = {
        name: {"score": m.get("calibrated"), "weight": m.get("weight"), "error": m.get("error")}
        for name, m in (result.get("per_model") or {}).items()
    }
    return _envelope(
        "job.succeeded",
        {
            "job_id": str(job_id),
            "status": "SUCCEEDED",
            "verdict": result["verdict"],
            "score": result.get("score"),
            "thresholds": {"t_low": result.get("t_low"), "t_high": result.get("t_high")},
            "method": result.get("method"),
            "models": models,
            "model_pack": result.get("model_pack"),
            "test_pack": result.get("test_pack", False),
            "calibration_version": result.get("calibration_version"),
            "result_url": f"/v1/jobs/{job_id}/result",
        },
    )


def failed(job_id: uuid.UUID, code: str, message: str) -> dict[str, Any]:
    return _envelope(
        "job.failed",
        {"job_id": str(job_id), "status": "FAILED", "error": {"code": code, "message": message}},
    )
