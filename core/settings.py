"""All configuration, read from the environment in one place.

With no service URLs set, Verity runs embedded: a SQLite file, Celery's filesystem transport and a
local-folder object store, all under ``VERITY_HOME``. Setting ``DATABASE_URL``, ``BROKER_URL`` and
``S3_BUCKET`` (plus ``S3_ENDPOINT_URL`` for non-AWS stores) switches to the real services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from core.env import SettingsError, env_bool, env_float, env_floats, env_int, env_str
from core.scoring.recalibration_config import KNOBS, RecalibrationConfig
from core.streams.limits import StreamLimits

REPO_ROOT = Path(__file__).resolve().parent.parent


DEFAULT_WEBHOOK_BACKOFF_S: tuple[float, ...] = (5, 30, 120, 600, 1800, 7200)
# Video decoders run on uploads, by FFmpeg's codec name (what `ffprobe` prints as codec_name). Each decoder is attack
# surface, so this is an allow-list, but it covers what people really have: phones and web video (h264, hevc, vp8,
# vp9, av1), webcams and IP cameras (mjpeg, h263), old AVI/DivX/Windows Media-era files (mpeg4, msmpeg4v2,
# msmpeg4v3), DVD/broadcast transfers (mpeg1video, mpeg2video), editing exports (prores) and Ogg-era web video
# (theora), and animations (gif, apng). wmv2/wmv3 are left out: they travel in ASF, a container Verity does not
# accept. Still images and animated WebP are read by Pillow, not by an FFmpeg decoder, and are not listed here.
DEFAULT_ACCEPTED_CODECS: frozenset[str] = frozenset(
    {
        "h264",
        "hevc",
        "vp8",
        "vp9",
        "av1",
        "mpeg4",
        "msmpeg4v2",
        "msmpeg4v3",
        "mjpeg",
        "h263",
        "mpeg1video",
        "mpeg2video",
        "prores",
        "theora",
        "gif",
        "apng",
    }
)


def parse_codecs(name: str, raw: str) -> frozenset[str]:
    """Video decoder names (comma-separated) as the canonical FFmpeg codec names probe_video compares against.

    A decoder's own name is accepted too and mapped to its codec ("msmpeg4" -> "msmpeg4v3", "libdav1d" -> "av1"),
    so a name copied from `ffmpeg -decoders` works. An unknown name is refused rather than dropped: a typo would
    otherwise silently refuse every upload in that codec.
    """
    # Imported here: only this setting needs FFmpeg, and every process (CLI tools included) loads the settings.
    from av.codec import Codec
    from av.codec.codec import UnknownCodecError

    names = [part.strip().lower() for part in raw.split(",") if part.strip()]
    if not names:
        raise SettingsError(f"{name} must list at least one video codec, got {raw!r}")
    canonical: set[str] = set()
    for codec_name in names:
        try:
            codec = Codec(codec_name, "r")
        except UnknownCodecError:
            raise SettingsError(
                f"{name}: {codec_name!r} is not a video decoder in this FFmpeg build (use FFmpeg codec names, e.g. "
                f"{', '.join(sorted(DEFAULT_ACCEPTED_CODECS))})"
            ) from None
        if codec.type != "video":
            raise SettingsError(f"{name}: {codec_name!r} is not a video codec (its type is {codec.type})")
        canonical.add(codec.canonical_name)
    return frozenset(canonical)


def accepted_codecs_from_env() -> frozenset[str]:
    """VERITY_ACCEPTED_CODECS, or the default list; SettingsError on an unknown name.

    Read on its own (not through get_settings) so media tools that probe files need no full configuration.
    """
    raw = env_str("VERITY_ACCEPTED_CODECS")
    return DEFAULT_ACCEPTED_CODECS if raw is None else parse_codecs("VERITY_ACCEPTED_CODECS", raw)


MAX_API_KEY_CACHE_S = 60.0
MAX_EXPLAIN_FRAMES = 16  # heatmaps per member and job: each costs a forward and a backward pass
WEIGHTS_DIR_ENV = "VERITY_WEIGHTS_DIR"
LOG_FORMATS = ("json", "text")


def weights_dir_from_env() -> Path | None:
    """VERITY_WEIGHTS_DIR (None: the pack manifest's own weights_dir).

    Read on its own too (not only through get_settings) so pack tools need no full configuration.
    """
    raw = env_str(WEIGHTS_DIR_ENV)
    return Path(raw) if raw else None


def _log_format(database_url: str) -> str:
    """VERITY_LOG_FORMAT; unset, json with real services (Postgres) and text embedded, where a person reads it."""
    raw = (env_str("VERITY_LOG_FORMAT") or "").strip().lower()
    if not raw:
        return "json" if database_url.startswith("postgres") else "text"
    if raw not in LOG_FORMATS:
        raise SettingsError(f"VERITY_LOG_FORMAT must be json or text, got {raw!r}")
    return raw


def _recalibration() -> RecalibrationConfig:
    """The VERITY_RECAL_* knobs over RecalibrationConfig's defaults, each checked on its own so the message
    names the variable."""
    values: dict[str, float | int | str] = {}
    for name, knob in KNOBS:
        raw = env_str(knob.env)
        if raw is None:
            continue
        try:
            values[name] = knob.kind(raw)
            RecalibrationConfig(**{name: values[name]})  # type: ignore[arg-type]
        except ValueError as exc:
            kind = {float: "a number", int: "an integer"}.get(knob.kind, "a string")
            detail = str(exc) if name in values else f"must be {kind}, got {raw!r}"
            raise SettingsError(f"{knob.env}: {detail}") from exc
    return RecalibrationConfig(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    broker_url: str
    s3_bucket: str | None
    s3_endpoint_url: str | None
    s3_region: str
    max_upload_bytes: int
    pack_manifest: Path
    weights_dir: Path | None
    device: str
    max_frames: int
    face_batch_size: int
    face_downscale: float
    face_keyframe_every: int
    detector_batch_size: int
    min_face_frames: int
    # Reliability: task_time_limit < lease < visibility_timeout (checked in validate()).
    task_time_limit_s: int
    lease_s: int
    visibility_timeout_s: int
    max_attempts: int
    reaper_interval_s: int
    webhook_secret: str
    webhook_allow_private: bool
    webhook_timeout_s: float
    webhook_max_attempts: int
    # Requests per minute per API key (0: no limit); /healthz, /readyz and /metrics are exempt.
    rate_limit_per_min: int = 600
    # Failed authentications per minute per client address (0: no limit); past it a request that would need its
    # key looked up in the database gets 429 instead, so guessing keys cannot cost a lookup each without bound.
    auth_fail_limit_per_min: int = 60
    webhook_backoff_s: tuple[float, ...] = field(default=DEFAULT_WEBHOOK_BACKOFF_S)
    webhook_relay_interval_s: float = 15.0
    # A job committed by the API but not yet marked enqueued is left alone this long before the reaper sends it.
    enqueue_grace_s: float = 30.0
    # A running job's worker renews its lease (and its liveness lock) this often, whatever stage it is in.
    heartbeat_interval_s: float = 30.0
    # Outages delay a job, they don't fail it: through an object-store, Postgres or broker outage a job is
    # retried with a backoff doubling up to outage_max_backoff_s, without using up its attempts, and fails only
    # once the outage has lasted outage_retry_budget_s.
    outage_retry_budget_s: float = 900.0
    outage_max_backoff_s: float = 30.0
    # How long an API process trusts an API key it has already checked before looking it up again; a revoked
    # key keeps working at most this long in a process that saw it (0: look every key up on every request).
    api_key_cache_s: float = 5.0
    # A worker that cannot reach its broker for this long at start-up exits (69) instead of retrying for ever.
    broker_startup_timeout_s: float = 30.0
    # Video codecs accepted on upload (canonical FFmpeg names); anything else is 415 UNSUPPORTED_MEDIA_TYPE.
    accepted_codecs: frozenset[str] = field(default=DEFAULT_ACCEPTED_CODECS)
    # json or text log lines (resolved at load: unset, json with Postgres and text embedded).
    log_format: str = "text"
    # Defaults of a calibration fit (VERITY_RECAL_*); the API body and the command override them per fit.
    recalibration: RecalibrationConfig = field(default_factory=RecalibrationConfig)
    # Beat fits a candidate this often, when the labels changed since the newest version (0: never).
    recalibrate_interval_s: float = 0.0
    # A scheduled fit activates its candidate when the held-out metrics beat the current setup's.
    recalibrate_auto_activate: bool = False
    max_batch_items: int = 50  # files per POST /v1/batches
    max_wait_s: float = 10.0  # the longest a POST /v1/jobs `wait` holds its request thread
    # Submit by URL: the worker's fetch may reach private addresses (on-premise only), and takes at most this long.
    source_allow_private: bool = False
    source_timeout_s: float = 300.0
    upload_url_ttl_s: int = 3600  # a presigned upload URL's life; an upload no job used by then is removed
    # Heatmaps (workers/explain): made for a job that does not say explain=true/false when this is set; per
    # member, the worst track's this-many highest-scoring crops.
    explain_default: bool = False
    explain_frames: int = 3
    streams: StreamLimits = field(default_factory=StreamLimits)  # live streams (VERITY_STREAM_*)

    @property
    def embedded_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    @property
    def local_storage_dir(self) -> Path:
        return self.home / "objects"

    def validate(self) -> None:
        if not (self.task_time_limit_s < self.lease_s < self.visibility_timeout_s):
            raise SettingsError(
                "inconsistent timeouts: need VERITY_TASK_TIME_LIMIT_S < VERITY_LEASE_S < "
                f"VERITY_VISIBILITY_TIMEOUT_S, got {self.task_time_limit_s} / {self.lease_s} / "
                f"{self.visibility_timeout_s}"
            )
        if self.max_attempts < 1:
            raise SettingsError("VERITY_MAX_ATTEMPTS must be at least 1")
        if self.reaper_interval_s < 1:
            raise SettingsError("VERITY_REAPER_INTERVAL_S must be at least 1")
        # Several heartbeats fit in a lease, so one slow beat never lets a live job's lease lapse.
        if not 0 < self.heartbeat_interval_s * 3 <= self.lease_s:
            raise SettingsError(
                f"VERITY_HEARTBEAT_INTERVAL_S ({self.heartbeat_interval_s}) must be positive and at most a third "
                f"of VERITY_LEASE_S ({self.lease_s})"
            )
        if self.webhook_max_attempts < 1:
            raise SettingsError("VERITY_WEBHOOK_MAX_ATTEMPTS must be at least 1")
        if self.webhook_relay_interval_s <= 0 or self.enqueue_grace_s < 0:
            raise SettingsError(
                "VERITY_WEBHOOK_RELAY_INTERVAL_S must be positive; VERITY_ENQUEUE_GRACE_S must not be negative"
            )
        if not 0 < self.outage_retry_budget_s < float("inf"):  # NaN fails this too
            raise SettingsError(
                f"VERITY_OUTAGE_RETRY_BUDGET_S must be a positive number of seconds, got {self.outage_retry_budget_s:g}"
            )
        # A job handed back for an outage waits out its backoff as a broker ETA held unacked by a worker: past
        # the visibility timeout Redis would deliver it twice. A claim waits one backoff for Postgres in place, so
        # the backoff must also leave the task most of its time limit.
        if not 0 < self.outage_max_backoff_s <= min(self.outage_retry_budget_s, self.task_time_limit_s / 3):
            raise SettingsError(
                f"VERITY_OUTAGE_MAX_BACKOFF_S ({self.outage_max_backoff_s:g}) must be positive, at most "
                f"VERITY_OUTAGE_RETRY_BUDGET_S ({self.outage_retry_budget_s:g}) and at most a third of "
                f"VERITY_TASK_TIME_LIMIT_S ({self.task_time_limit_s})"
            )
        if self.face_keyframe_every < 1:
            raise SettingsError("VERITY_FACE_KEYFRAME_EVERY must be at least 1 (1: search every sampled frame)")
        if self.max_upload_bytes < 1:
            raise SettingsError("VERITY_MAX_UPLOAD_BYTES must be positive")
        if self.rate_limit_per_min < 0:
            raise SettingsError("VERITY_RATE_LIMIT_PER_MIN must not be negative (0 disables the limit)")
        if self.auth_fail_limit_per_min < 0:
            raise SettingsError("VERITY_AUTH_FAIL_LIMIT_PER_MIN must not be negative (0 disables the limit)")
        if not 0 < self.broker_startup_timeout_s < float("inf"):  # NaN fails this too
            raise SettingsError(
                f"VERITY_BROKER_STARTUP_TIMEOUT_S must be a positive number of seconds, got "
                f"{self.broker_startup_timeout_s:g}"
            )
        if not 0 <= self.api_key_cache_s <= MAX_API_KEY_CACHE_S:
            raise SettingsError(
                f"VERITY_API_KEY_CACHE_S must be between 0 and {MAX_API_KEY_CACHE_S:g} (it bounds how long a revoked "
                f"key keeps working), got {self.api_key_cache_s:g}"
            )
        if not (0 < self.source_timeout_s < float("inf") and 0 < self.upload_url_ttl_s <= 7 * 24 * 3600):
            raise SettingsError("VERITY_SOURCE_TIMEOUT_S must be positive, VERITY_UPLOAD_URL_TTL_S 1-604800 s")
        if not (1 <= self.max_batch_items <= 1000 and 0 <= self.max_wait_s <= 60):  # NaN fails this too
            raise SettingsError("VERITY_MAX_BATCH_ITEMS must be 1-1000 and VERITY_MAX_WAIT_S 0-60 seconds")
        if not 1 <= self.explain_frames <= MAX_EXPLAIN_FRAMES:
            raise SettingsError(f"VERITY_EXPLAIN_FRAMES must be 1-{MAX_EXPLAIN_FRAMES}, got {self.explain_frames}")
        if problem := self.streams.problem():
            raise SettingsError(problem)
        if not 0 <= self.recalibrate_interval_s < float("inf"):  # NaN fails this too
            raise SettingsError(
                "VERITY_RECALIBRATE_INTERVAL_S must be a number of seconds (0: no scheduled fit), got "
                f"{self.recalibrate_interval_s:g}"
            )


def _default_webhook_secret(home: Path) -> str:
    """Embedded mode keeps a generated signing secret in VERITY_HOME so restarts keep verifying."""
    import base64
    import secrets

    path = home / "webhook_secret"
    if path.exists():
        return path.read_text().strip()
    home.mkdir(parents=True, exist_ok=True)
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
    path.write_text(secret)
    path.chmod(0o600)
    return secret


def sqlalchemy_url(database_url: str) -> str:
    """A libpq-style ``postgres(ql)://`` URL names the psycopg 3 driver for SQLAlchemy (which would pick psycopg2)."""
    for prefix in ("postgres://", "postgresql://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url.removeprefix(prefix)
    return database_url


def load_settings() -> Settings:
    if env_str("VERITY_DB_RETRY_S") is not None:
        # Replaced, not ignored: a deployment that set it would silently get another retry window than it chose.
        raise SettingsError("VERITY_DB_RETRY_S was replaced by VERITY_OUTAGE_RETRY_BUDGET_S (README, Reliability)")
    home = Path(env_str("VERITY_HOME", str(REPO_ROOT / ".verity")) or "").resolve()
    database_url = sqlalchemy_url(env_str("DATABASE_URL") or f"sqlite:///{home / 'verity.db'}")
    lease_s = env_int("VERITY_LEASE_S", 1200)
    settings = Settings(
        home=home,
        database_url=database_url,
        broker_url=env_str("BROKER_URL", "filesystem://") or "filesystem://",
        s3_bucket=env_str("S3_BUCKET"),
        s3_endpoint_url=env_str("S3_ENDPOINT_URL"),
        s3_region=env_str("S3_REGION", "us-east-1") or "us-east-1",
        max_upload_bytes=env_int("VERITY_MAX_UPLOAD_BYTES", 512 * 1024 * 1024),
        pack_manifest=Path(env_str("VERITY_PACK", str(REPO_ROOT / "models" / "packs" / "default.yaml")) or ""),
        weights_dir=weights_dir_from_env(),
        device=env_str("VERITY_DEVICE", "auto") or "auto",
        max_frames=env_int("VERITY_MAX_FRAMES", 32),
        face_batch_size=env_int("VERITY_FACE_BATCH_SIZE", 16),
        face_downscale=env_float("VERITY_FACE_DOWNSCALE", 1.0),
        face_keyframe_every=env_int("VERITY_FACE_KEYFRAME_EVERY", 4),
        detector_batch_size=env_int("VERITY_DETECTOR_BATCH_SIZE", 32),
        min_face_frames=env_int("VERITY_MIN_FACE_FRAMES", 3),
        task_time_limit_s=env_int("VERITY_TASK_TIME_LIMIT_S", 900),
        lease_s=lease_s,
        visibility_timeout_s=env_int("VERITY_VISIBILITY_TIMEOUT_S", 1800),
        max_attempts=env_int("VERITY_MAX_ATTEMPTS", 3),
        reaper_interval_s=env_int("VERITY_REAPER_INTERVAL_S", 60),
        webhook_secret=env_str("VERITY_WEBHOOK_SECRET") or _default_webhook_secret(home),
        webhook_allow_private=env_bool("VERITY_WEBHOOK_ALLOW_PRIVATE", False),
        webhook_timeout_s=env_float("VERITY_WEBHOOK_TIMEOUT_S", 10.0),
        webhook_max_attempts=env_int("VERITY_WEBHOOK_MAX_ATTEMPTS", 6),
        rate_limit_per_min=env_int("VERITY_RATE_LIMIT_PER_MIN", 600),
        auth_fail_limit_per_min=env_int("VERITY_AUTH_FAIL_LIMIT_PER_MIN", 60),
        webhook_backoff_s=env_floats("VERITY_WEBHOOK_BACKOFF_S", DEFAULT_WEBHOOK_BACKOFF_S),
        webhook_relay_interval_s=env_float("VERITY_WEBHOOK_RELAY_INTERVAL_S", 15.0),
        enqueue_grace_s=env_float("VERITY_ENQUEUE_GRACE_S", 30.0),
        heartbeat_interval_s=env_float("VERITY_HEARTBEAT_INTERVAL_S", max(0.5, min(30.0, lease_s / 6))),
        outage_retry_budget_s=env_float("VERITY_OUTAGE_RETRY_BUDGET_S", 900.0),
        outage_max_backoff_s=env_float("VERITY_OUTAGE_MAX_BACKOFF_S", 30.0),
        api_key_cache_s=env_float("VERITY_API_KEY_CACHE_S", 5.0),
        broker_startup_timeout_s=env_float("VERITY_BROKER_STARTUP_TIMEOUT_S", 30.0),
        accepted_codecs=accepted_codecs_from_env(),
        log_format=_log_format(database_url),
        recalibration=_recalibration(),
        recalibrate_interval_s=env_float("VERITY_RECALIBRATE_INTERVAL_S", 0.0),
        recalibrate_auto_activate=env_bool("VERITY_RECALIBRATE_AUTO_ACTIVATE", False),
        max_batch_items=env_int("VERITY_MAX_BATCH_ITEMS", 50),
        max_wait_s=env_float("VERITY_MAX_WAIT_S", 10.0),
        source_allow_private=env_bool("VERITY_SOURCE_ALLOW_PRIVATE", False),
        source_timeout_s=env_float("VERITY_SOURCE_TIMEOUT_S", 300.0),
        upload_url_ttl_s=env_int("VERITY_UPLOAD_URL_TTL_S", 3600),
        explain_default=env_bool("VERITY_EXPLAIN_DEFAULT", False),
        explain_frames=env_int("VERITY_EXPLAIN_FRAMES", 3),
        streams=StreamLimits(
            env_int("VERITY_STREAM_MAX_SESSIONS_PER_KEY", 4),
            env_int("VERITY_STREAM_MAX_FRAME_BYTES", 2 * 1024 * 1024),
            env_float("VERITY_STREAM_MAX_FPS", 10.0),
            env_int("VERITY_STREAM_BACKLOG", 8),
            env_float("VERITY_STREAM_IDLE_TIMEOUT_S", 30.0),
            env_float("VERITY_STREAM_TAKEOVER_S", 10.0),
            env_int("VERITY_STREAM_WORKER_SESSIONS", 16),
        ),
    )
    settings.validate()
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
