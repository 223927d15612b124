"""Ten parallel POST /v1/jobs with one Idempotency-Key: one job, one stored object, one id in every answer.

A real threaded HTTP server in this process (werkzeug), real Postgres and the S3 server; the ten requests are
released together by a barrier so they race through the lookup, the upload and the insert.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
import requests
from sqlalchemy import func, select

from tests.conftest import Keys, Services, bearer, serving, shared_file
from tests.faults.conftest import FaultRow, scenario
from tests.support.videos import CLIP

PARALLEL = 10


@pytest.fixture
def api_url(services: Services) -> Iterator[str]:
    from api.app import create_app

    with serving(create_app()) as url:
        yield url


def _objects(services: Services) -> set[str]:
    s3 = boto3.client(
        "s3",
        endpoint_url=services.s3_endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    keys: set[str] = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=services.bucket):
        keys.update(o["Key"] for o in page.get("Contents", []))
    return keys


@scenario("7 ten parallel POSTs, one Idempotency-Key")
def test_parallel_posts_with_one_idempotency_key_make_one_job(
    api_url: str, services: Services, keys: Keys, fault_row: FaultRow
) -> None:
    from db.models import Job
    from db.session import session_scope

    clip = shared_file(CLIP).read_bytes()
    idem = f"race-{uuid.uuid4()}"
    before = _objects(services)
    barrier = threading.Barrier(PARALLEL)

    def post(_: int) -> requests.Response:
        barrier.wait()
        return requests.post(
            f"{api_url}/v1/jobs",
            headers={**bearer(keys.submitter), "Idempotency-Key": idem},
            files={"file": ("clip.mp4", clip, "video/mp4")},
            data={"max_frames": "2"},
            timeout=60,
        )

    with ThreadPoolExecutor(PARALLEL) as pool:
        responses = list(pool.map(post, range(PARALLEL)))

    statuses = sorted(r.status_code for r in responses)
    ids = {r.json()["id"] for r in responses}
    with session_scope() as s:
        rows = s.scalars(select(Job.id).where(Job.idempotency_key == idem)).all()
        total = s.scalar(select(func.count()).select_from(Job).where(Job.idempotency_key == idem))
    new_objects = _objects(services) - before

    fault_row.jobs = total or 0
    fault_row.completed = len(ids)
    fault_row.duplicated = max(0, len(new_objects) - 1) + max(0, (total or 0) - 1)
    fault_row.note = f"answers {statuses}; {len(new_objects)} new object(s) in the bucket"
    assert statuses == [200] * (PARALLEL - 1) + [202], "one creation, nine replays"
    assert all(r.headers.get("Idempotent-Replayed") == "true" for r in responses if r.status_code == 200)
    assert len(ids) == 1 and [str(r) for r in rows] == list(ids)
    assert new_objects == {f"uploads/{next(iter(ids))}"}, new_objects
