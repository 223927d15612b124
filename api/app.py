"""The Flask application factory. It never runs migrations and never imports torch."""

from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Flask

from api import (
    auth,
    batches,
    boundary,
    calibrations,
    deliveries,
    feedback,
    health,
    heatmaps,
    jobs,
    metrics,
    openapi,
    presigned,
    ratelimit,
    review,
    simulate,
    streams,
)
from api.errors import register_error_handlers
from core.settings import Settings, get_settings

log = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask("verity")
    app.config["VERITY_SETTINGS"] = settings
    # Body caps per route, the request class and JSON reader, NULs and surrogates in URLs and headers.
    boundary.init_app(app)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # on boundary's provider, which replaces app.json
    register_error_handlers(app)
    auth.init_app(app, settings)
    ratelimit.init_app(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(heatmaps.bp)
    app.register_blueprint(batches.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(calibrations.bp)
    app.register_blueprint(simulate.bp)
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(review.bp)
    app.register_blueprint(presigned.bp)
    app.register_blueprint(streams.bp)
    app.register_blueprint(openapi.bp)
    metrics.init_app(app)  # JSON logs (VERITY_LOG_FORMAT), request id + job id on every log line
    return app


def warm_up(app: Flask) -> None:
    """Build this process's long-lived clients before it takes requests (gunicorn's post_worker_init hook in
    api/gunicorn_conf.py): the object-store client, the Celery app and its AMQP machinery, a database and a
    Redis connection. Otherwise the first upload in each worker pays for importing boto3 and half of Celery —
    seconds on a busy host. Best effort: a service that is down now is only logged, the requests report it."""
    from core.queue import get_celery
    from core.storage import get_store
    from db.session import get_engine

    def limiter() -> None:
        client = getattr(app.extensions["verity_rate_limiter"].counter, "client", None)
        if client is not None:  # Redis (embedded mode counts in memory)
            client.ping()

    steps: dict[str, Callable[[], object]] = {
        "object store": get_store,
        "celery": lambda: (get_celery().amqp, get_celery().producer_pool),
        "database": lambda: get_engine().connect().close(),
        "rate limiter": limiter,
    }
    for name, step in steps.items():
        try:
            step()
        except Exception as exc:
            log.warning("warm-up of the %s failed (requests will retry): %s", name, exc)
