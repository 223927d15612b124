"""Rate limits in fixed one-minute windows counted in Redis, so every gunicorn worker (and every API host) shares
one count:

* per API key: only authenticated routes are limited (auth.require_role calls ``enforce`` once the key is known);
  /healthz, /readyz, /metrics and the docs are not. VERITY_RATE_LIMIT_PER_MIN=0 turns it off.
* failed authentications per client address (``refuse_failing_client`` / ``record_auth_failure``): once an
  address is over VERITY_AUTH_FAIL_LIMIT_PER_MIN, its requests that would need a key looked up in the database
  get 429 instead. The address is the connection's (REMOTE_ADDR): behind a reverse proxy every client shares the
  proxy's. VERITY_AUTH_FAIL_LIMIT_PER_MIN=0 turns it off.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import redis
from flask import Flask, current_app

from api.errors import ApiError
from core.settings import Settings

log = logging.getLogger(__name__)

WINDOW_MS = 60_000
# INCR and set the expiry in one step: two workers can never both see a fresh key, and a key never outlives
# its window without an expiry (INCR then EXPIRE from the client could die in between).
_INCR_SCRIPT = """
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
"""
# After a Redis failure the limiter stays out of the way this long before trying Redis again.
REDIS_RETRY_S = 5.0


class Counter(Protocol):
    def hit(self, key: str) -> tuple[int, int]:
        """Count one request for ``key``: (requests in the current window, ms until the window resets)."""
        ...

    def peek(self, key: str) -> tuple[int, int]:
        """The count and the ms until the window resets, counting nothing."""
        ...


class RedisCounter:
    def __init__(self, url: str) -> None:
        # Short timeouts: the limiter must never be why a request hangs (see enforce: it fails open).
        self.client = redis.Redis.from_url(url, socket_timeout=0.25, socket_connect_timeout=0.25)
        self.script: Any = self.client.register_script(_INCR_SCRIPT)

    def hit(self, key: str) -> tuple[int, int]:
        count, ttl = self.script(keys=[f"verity:ratelimit:{key}"], args=[WINDOW_MS])
        return int(count), int(ttl)

    def peek(self, key: str) -> tuple[int, int]:
        with self.client.pipeline(transaction=False) as pipe:
            pipe.get(f"verity:ratelimit:{key}")
            pipe.pttl(f"verity:ratelimit:{key}")
            count, ttl = pipe.execute()
        return int(count or 0), max(int(ttl), 0)


@dataclass
class LocalCounter:
    """Embedded mode has no Redis (Celery uses the filesystem broker), so each API process counts on its own:
    with N processes a key gets up to N times the limit. Embedded mode runs one API process."""

    windows: dict[str, tuple[float, int]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, key: str) -> tuple[int, int]:
        return self._count(key, 1)

    def peek(self, key: str) -> tuple[int, int]:
        return self._count(key, 0)

    def _count(self, key: str, add: int) -> tuple[int, int]:
        now = time.monotonic()
        with self.lock:
            start, count = self.windows.get(key, (now, 0))
            if now - start >= WINDOW_MS / 1000:
                start, count = now, 0
            self.windows[key] = (start, count + add)
        return count + add, math.ceil((start + WINDOW_MS / 1000 - now) * 1000)


@dataclass
class RateLimiter:
    limit: int
    counter: Counter
    auth_fail_limit: int = 0
    down_until: float = 0.0

    def _count(self, count: Callable[[str], tuple[int, int]], key: str) -> tuple[int, int] | None:
        """``count(key)``, or None while Redis is down: fail open, a Redis outage must not take the API down with
        it (jobs are still accepted then)."""
        if time.monotonic() < self.down_until:
            return None
        try:
            return count(key)
        except redis.RedisError as exc:
            self.down_until = time.monotonic() + REDIS_RETRY_S
            log.warning("rate limiter unavailable, not limiting for %.0f s: %s", REDIS_RETRY_S, exc)
            return None

    def enforce(self, key: str) -> None:
        """Raise 429 (with Retry-After) when ``key`` is over its limit in the current window."""
        if self.limit <= 0 or (counted := self._count(self.counter.hit, key)) is None:
            return
        count, reset_ms = counted
        if count > self.limit:
            retry_after = _seconds(reset_ms)
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"more than {self.limit} requests in a minute for this API key; retry in {retry_after} s",
                {"Retry-After": str(retry_after)},
            )

    def refuse_failing_client(self, address: str) -> None:
        """Raise 429 when ``address`` has failed authentication too often in the current window."""
        if self.auth_fail_limit <= 0 or (counted := self._count(self.counter.peek, f"authfail:{address}")) is None:
            return
        count, reset_ms = counted
        if count >= self.auth_fail_limit:
            retry_after = _seconds(reset_ms)
            raise ApiError(
                429,
                "RATE_LIMITED",
                f"{self.auth_fail_limit} failed authentications in a minute from this address; "
                f"retry in {retry_after} s",
                {"Retry-After": str(retry_after)},
            )

    def record_auth_failure(self, address: str) -> None:
        if self.auth_fail_limit > 0:
            self._count(self.counter.hit, f"authfail:{address}")


def _seconds(reset_ms: int) -> int:
    return max(1, math.ceil(reset_ms / 1000))


def make_limiter(settings: Settings) -> RateLimiter:
    redis_broker = settings.broker_url.startswith(("redis://", "rediss://"))
    counter: Counter = RedisCounter(settings.broker_url) if redis_broker else LocalCounter()
    return RateLimiter(settings.rate_limit_per_min, counter, settings.auth_fail_limit_per_min)


def init_app(app: Flask, settings: Settings) -> None:
    app.extensions["verity_rate_limiter"] = make_limiter(settings)


def limiter() -> RateLimiter:
    found: RateLimiter = current_app.extensions["verity_rate_limiter"]
    return found


def enforce(key: str) -> None:
    limiter().enforce(key)
