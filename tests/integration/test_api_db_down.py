"""With the database unreachable the API answers 503 in the one error shape (never 500), /readyz included."""

from __future__ import annotations

import os

import pytest

from tests.conftest import Keys, Services, bearer, reset_caches
from tests.support.http import body
from tests.support.services import free_port


def test_unreachable_database_is_503_not_500(services: Services, keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing listens on this port: every connection attempt is refused at once.
    monkeypatch.setitem(os.environ, "DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/verity")
    reset_caches()
    try:
        from api.app import create_app

        client = create_app().test_client()
        for method, path in (("GET", "/v1/jobs"), ("GET", "/v1/jobs/00000000-0000-0000-0000-000000000000")):
            response = client.open(path, method=method, headers=bearer(keys.submitter))
            assert response.status_code == 503, (path, response.json)
            assert body(response)["error"]["code"] == "DATABASE_UNAVAILABLE"
            assert response.headers["Retry-After"]
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert body(ready)["checks"]["database"].startswith("error")
    finally:
        monkeypatch.undo()
        reset_caches()


def test_worker_warm_up_builds_the_clients_and_never_fails_the_worker(
    services: Services, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """gunicorn's post_worker_init (api/gunicorn_conf.py) runs api.app.warm_up: with every service up it builds
    the per-process clients; with the database down it only logs."""
    from api.app import create_app, warm_up
    from core.queue import get_celery
    from core.storage import get_store

    reset_caches()
    warm_up(create_app())
    assert get_store.cache_info().currsize == 1 and get_celery.cache_info().currsize == 1
    assert "warm-up" not in capsys.readouterr().err  # create_app's logging writes JSON lines to stderr

    monkeypatch.setitem(os.environ, "DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/verity")
    reset_caches()
    try:
        warm_up(create_app())  # must not raise: the worker still starts and answers 503 until the database is back
        assert "warm-up of the database failed" in capsys.readouterr().err
    finally:
        monkeypatch.undo()
        reset_caches()
