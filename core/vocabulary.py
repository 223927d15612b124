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
    # A live stream's job (POST /v1/streams) while its session is open; closing it makes it SUCCEEDED.
    STREAMING = "STREAMING"


TERMINAL_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


class BatchStatus(StrEnum):
    """A batch's status, from its items' (core/batches.py): COMPLETED once every item is terminal."""

    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"


class Stage(StrEnum):
    """Where a job is within its status (``jobs.stage``); shown to clients as progress."""

    QUEUED = "queued"
    REQUEUED = "requeued"
    CLAIMED = "claimed"
    FETCHING = "fetching"  # a source_url job: the worker fetches the URL into the object store
    DOWNLOADING = "downloading"
    DECODING = "decoding"
    SCORING = "scoring"
    RETRYING = "retrying"
    WAITING_FOR_STORAGE = "waiting_for_storage"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class SourceError(StrEnum):
    """Why the worker could not fetch a job's source_url: the submitter's problem, so the job fails at once."""

    UNREACHABLE = "SOURCE_UNREACHABLE"  # no connection, a TLS failure, a non-2xx answer, too many redirects
    TOO_LARGE = "SOURCE_TOO_LARGE"  # over VERITY_MAX_UPLOAD_BYTES
    TIMEOUT = "SOURCE_TIMEOUT"  # over VERITY_SOURCE_TIMEOUT_S in all, or silent past the read timeout
    REFUSED = "SOURCE_REFUSED"  # the URL or a redirect leads to a private, loopback or reserved address


class UploadError(StrEnum):
    """Why POST /v1/jobs refuses an upload_id."""

    NOT_FOUND = "UPLOAD_NOT_FOUND"  # no such upload for this tenant
    EXPIRED = "UPLOAD_EXPIRED"  # its URL expired before a job used it
    EMPTY = "UPLOAD_EMPTY"  # nothing was PUT to its URL
    TOO_LARGE = "UPLOAD_TOO_LARGE"  # more than its max_bytes was PUT
    USED = "UPLOAD_USED"  # another job already used it


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
    # Set by the pipeline when the faces are outside what the pack can judge (core/scope.py gives the reason).
    NOT_APPLICABLE = "NOT_APPLICABLE"


class MediaKind(StrEnum):
    """What a job scored: a still image (one frame) or a video (animated GIF/WebP/APNG included)."""

    IMAGE = "image"
    VIDEO = "video"
    STREAM = "stream"  # a live stream's frames (POST /v1/streams), decided as they came


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


class StreamStrategyKind(StrEnum):
    """How a live stream turns frame scores into a rolling decision (seed 000)."""

    WINDOW = "window"  # Option A: the last N frames through the pack's own aggregate -> calibrate -> fuse
    PER_FRAME = "per_frame"  # Option B: fuse each frame, then average the fused scores over time


class StreamAveraging(StrEnum):
    """Option B's average over time of the per-frame fused scores."""

    MEAN = "mean"  # over the last N frames with a face
    EMA = "ema"  # exponential moving average over every frame with a face


class StreamStatus(StrEnum):
    """A live stream session: OPEN takes frames; CLOSING (DELETE) until its worker stores the final decision."""

    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class StreamUpdates(StrEnum):
    """Which decisions a stream's WebSocket and Server-Sent Events carry."""

    CHANGES = "changes"  # only when the verdict changes (the first decision included), and the final one
    FRAMES = "frames"  # after every scored frame


class TaskName(StrEnum):
    """Celery task names: the API enqueues by name without importing the worker code."""

    DETECT = "verity.detect"
    DELIVER_WEBHOOK = "verity.deliver_webhook"
    REAP = "verity.reap"
    RELAY_WEBHOOKS = "verity.relay_webhooks"
    RECALIBRATE = "verity.recalibrate"
