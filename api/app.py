"""The Flask application factory. It never runs migrations and never imports torch."""

from __future__ import annotations

from flask import Flask

from api import calibrations, deliveries, feedback, health, jobs, metrics, openapi, ratelimit, review
from api.errors import register_error_handlers
from api.uploads import UploadRequest
from db.settings import Settings, get_settings

# Room for the multipart envelope and form fields around the video itself.
MULTIPART_OVERHEAD = 1024 * 1024


def create_app(settings: Settings | None = None) -> Flask:
    settings = settings or get_settings()
    app = Flask("verity")
    app.request_class = UploadRequest
    app.config["VERITY_SETTINGS"] = settings
    # werkzeug enforces this while reading the body, so an oversized upload is refused with 413 unbuffered.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_upload_bytes + MULTIPART_OVERHEAD
    app.json.sort_keys = False  # type: ignore[attr-defined]
    register_error_handlers(app)
    ratelimit.init_app(app, settings)
    app.register_blueprint(health.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(feedback.bp)
    app.register_blueprint(calibrations.bp)
    app.register_blueprint(deliveries.bp)
    app.register_blueprint(metrics.bp)
    app.register_blueprint(review.bp)
    app.register_blueprint(openapi.bp)
    metrics.init_app(app)  # JSON logs (VERITY_LOG_FORMAT), request id + job id on every log line
    return app
