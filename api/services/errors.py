"""The refusals a service raises, by kind; api.errors.service_errors maps each kind to its HTTP status."""

from __future__ import annotations


class ServiceError(Exception):
    """A refusal the caller can act on: ``code`` is the machine-readable error code the API reports."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class BadInput(ServiceError):
    """The request lacks what the operation needs (an empty file)."""


class NotFound(ServiceError):
    """No such object for this tenant: another tenant's is indistinguishable from a missing one."""


class Conflict(ServiceError):
    """The object's state does not allow the operation (a finished job, a result not ready)."""


class Unsupported(ServiceError):
    """The upload is not a media type the service accepts."""


class Invalid(ServiceError):
    """Well-formed but unacceptable content: media over the limits, an unsafe webhook URL, a reused key."""


class TooLarge(ServiceError):
    """One piece of the request is over its byte limit (a stream frame over VERITY_STREAM_MAX_FRAME_BYTES)."""


class OverLimit(ServiceError):
    """A per-key or per-session limit: too many open sessions, frames sent faster than allowed."""


class Unavailable(ServiceError):
    """A dependency is down; retrying later may succeed."""
