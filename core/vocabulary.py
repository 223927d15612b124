"""The words every process shares: job statuses and stages, verdicts, roles, fusion methods, sampling strategies,
feedback labels and Celery task names. Each is declared here once; the database enums, the API schemas, the
pipeline and the tools all import them from here.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    SUBMITTER = "submitter"
    MODERATOR = "moderator"
    ADMIN = "admin"


class JobStatus(StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class Stage(StrEnum):
    """Where a job is within its status (``jobs.stage``); shown to clients as progress."""

    QUEUED = "queued"
    REQUEUED = "requeued"
    CLAIMED = "claimed"
    DOWNLOADING = "downloading"
    DECODING = "decoding"
    SCORING = "scoring"
    RETRYING = "retrying"
    WAITING_FOR_STORAGE = "waiting_for_storage"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class DeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DISABLED = "disabled"


class Verdict(StrEnum):
    REAL = "REAL"
    FAKE = "FAKE"
    UNCERTAIN = "UNCERTAIN"
    # Set by the pipeline when too few frames had a face; the threshold decision never returns it.
    NO_FACE = "NO_FACE"


class Label(StrEnum):
    """A moderator's label for a job; UNKNOWN records a review that could not decide."""

    REAL = "REAL"
    FAKE = "FAKE"
    UNKNOWN = "UNKNOWN"


class FeedbackCategory(StrEnum):
    FALSE_POSITIVE = "FALSE_POSITIVE"
    FALSE_NEGATIVE = "FALSE_NEGATIVE"
    CONFIRMATION = "CONFIRMATION"
    OTHER = "OTHER"


class FusionMethod(StrEnum):
    WEIGHTED_AVERAGE = "weighted_average"
    NOISY_OR = "noisy_or"
    STACKER = "stacker"


FUSION_METHODS: tuple[str, ...] = tuple(m.value for m in FusionMethod)


class SamplingStrategy(StrEnum):
    UNIFORM = "uniform"
    FIXED_RATE = "fixed_rate"


SAMPLING_STRATEGIES: tuple[str, ...] = tuple(s.value for s in SamplingStrategy)


class TaskName(StrEnum):
    """Celery task names: the API enqueues by name without importing the worker code."""

    DETECT = "verity.detect"
    DELIVER_WEBHOOK = "verity.deliver_webhook"
    REAP = "verity.reap"
    RELAY_WEBHOOKS = "verity.relay_webhooks"
    RECALIBRATE = "verity.recalibrate"
