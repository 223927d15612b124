"""Real services for the tests: a fresh Postgres database, a Redis database, and moto's S3 server over HTTP.

Unit tests under tests/unit need none of these and never touch the fixtures here.
"""

from __future__ import annotations

import base64
import os
import secrets
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import REPO as REPO  # explicit re-export: test modules take REPO from here
from tests.support.services import moto_s3, scratch_database

TESTDATA = REPO.parent / "shared" / "testdata"
PG_ADMIN_URL = os.environ.get("VERITY_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
# A Redis database per test session (by pid), so two runs on one machine never flush or consume each
# other's queues; SCRATCH_REDIS_URL is a second one for tests that must fill queues by hand.
_REDIS_DB = 1 + os.getpid() % 7
REDIS_URL = os.environ.get("VERITY_TEST_REDIS", f"redis://127.0.0.1:6379/{_REDIS_DB}")
SCRATCH_REDIS_URL = REDIS_URL.rsplit("/", 1)[0] + f"/{_REDIS_DB + 7}"


def shared_file(relative: str) -> Path:
    path = TESTDATA / relative
    if not path.exists():
        pytest.skip(f"test material {path} is absent (expected ../shared/testdata beside the repo)")
    return path


def reset_caches() -> None:
    from core.queue import get_celery
    from core.settings import get_settings
    from core.storage import get_store
    from db.session import get_engine, get_sessionmaker

    if get_engine.cache_info().currsize:
        get_engine().dispose()
    for fn in (get_settings, get_engine, get_sessionmaker, get_store, get_celery):
        fn.cache_clear()


@dataclass(frozen=True)
class Services:
    database_url: str
    broker_url: str
    s3_endpoint: str
    bucket: str
    home: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    home = tmp_path_factory.mktemp("verity-home")
    with scratch_database(PG_ADMIN_URL, f"verity_test_{os.getpid()}") as database, moto_s3() as s3_endpoint:
        env = {
            "DATABASE_URL": database,
            "BROKER_URL": REDIS_URL,
            "S3_BUCKET": "verity-test",
            "S3_ENDPOINT_URL": s3_endpoint,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "VERITY_HOME": str(home),
            "VERITY_WEBHOOK_ALLOW_PRIVATE": "1",
            "VERITY_WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode(),
            "VERITY_MAX_UPLOAD_BYTES": str(64 * 1024 * 1024),
        }
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            reset_caches()
            from core.storage import S3Store, get_store

            store = get_store()
            assert isinstance(store, S3Store)
            store.ensure_bucket()
            yield Services(database, REDIS_URL, s3_endpoint, "verity-test", home, env)
        finally:
            reset_caches()
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


@dataclass(frozen=True)
class Keys:
    submitter: str
    moderator: str
    admin: str
    other_tenant: str
    revoked: str


@pytest.fixture(scope="session")
def keys(services: Services) -> Keys:
    from db.apikeys import create_key, revoke_key
    from db.session import session_scope

    with session_scope() as s:
        made = {
            name: create_key(s, name, tenant, role)
            for name, tenant, role in (
                ("submitter", "acme", "submitter"),
                ("moderator", "acme", "moderator"),
                ("admin", "acme", "admin"),
                ("other_tenant", "globex", "submitter"),
                ("revoked", "acme", "submitter"),
            )
        }
        revoke_key(s, made["revoked"].record.prefix)
    return Keys(**{name: issued.plaintext for name, issued in made.items()})


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def insert_job(tenant: str, status: str = "RUNNING", **values: Any) -> uuid.UUID:
    """A job row written straight to Postgres: no upload and nothing enqueued, so no worker touches it.
    ``values`` set or override any column (the stage defaults to the status, lower-cased)."""
    from db.models import Job
    from db.session import session_scope

    job_id = uuid.uuid4()
    row: dict[str, Any] = {
        "stage": status.lower(),
        "input_key": f"uploads/{job_id}",
        "sha256": "0" * 64,
        "size_bytes": 1,
        "params": {"max_frames": 32, "sampling": "uniform"},
        "metadata_": {},
        **values,
    }
    with session_scope() as s:
        s.add(Job(id=job_id, tenant=tenant, status=status, **row))
    return job_id


def insert_delivery(url: str, tenant: str = "acme", event: str = "job.succeeded") -> uuid.UUID:
    """A pending webhook delivery to `url` for a new finished job, as if accepted earlier."""
    from db.models import WebhookDelivery
    from db.session import session_scope

    job_id = insert_job(tenant, "SUCCEEDED", webhook_url=url)
    with session_scope() as s:
        delivery = WebhookDelivery(
            job_id=job_id, event=event, url=url, payload={"type": event, "data": {"job_id": str(job_id)}}
        )
        s.add(delivery)
        s.flush()
        return delivery.id


def delivery_row(delivery_id: uuid.UUID) -> Any:
    from db.models import WebhookDelivery
    from db.session import session_scope

    with session_scope() as s:
        return s.get(WebhookDelivery, delivery_id)


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """A WSGI app on a loopback port in a thread of this process (werkzeug, threaded): its base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
