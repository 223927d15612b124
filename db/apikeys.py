"""API keys: generated once, shown once, stored as prefix + SHA-256 of the secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.vocabulary import Role
from db.models import ApiKey

KEY_SCHEME = "vrt"


@dataclass(frozen=True)
class IssuedKey:
    plaintext: str
    record: ApiKey


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(session: Session, name: str, tenant: str, role: Role | str) -> IssuedKey:
    role = Role(role)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = ApiKey(name=name, tenant=tenant, role=role.value, prefix=prefix, secret_sha256=_hash(secret))
    session.add(record)
    session.flush()
    return IssuedKey(plaintext=f"{KEY_SCHEME}_{prefix}_{secret}", record=record)


def parse_key(plaintext: str) -> tuple[str, str] | None:
    scheme, _, rest = plaintext.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != KEY_SCHEME or len(prefix) != 12 or not secret:
        return None
    return prefix, secret


def authenticate(session: Session, plaintext: str) -> ApiKey | None:
    """The active key for this plaintext, or None. The secret is compared in constant time."""
    parsed = parse_key(plaintext)
    if parsed is None:
        return None
    prefix, secret = parsed
    record = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if record is None or record.revoked_at is not None:
        return None
    if not hmac.compare_digest(record.secret_sha256, _hash(secret)):
        return None
    return record


@dataclass(frozen=True)
class Principal:
    """Who an authenticated request acts for: the key's columns a handler may read, detached from any session."""

    id: int
    name: str
    tenant: str
    role: str
    prefix: str

    @classmethod
    def of(cls, key: ApiKey) -> Principal:
        return cls(id=key.id, name=key.name, tenant=key.tenant, role=key.role, prefix=key.prefix)


class KeyCache:
    """Per-process memory of keys that authenticated recently: SHA-256(presented key) -> Principal, for
    ``ttl_s`` seconds. A hit skips the database lookup; only successful lookups are kept, so a new key works at
    once and a wrong one is looked up every time. Revoking a key (``verity-keys revoke``, another process)
    reaches every API process within ``ttl_s``: that is the bound on how long a revoked key keeps working.
    ``ttl_s`` 0 turns the cache off. Thread-safe (gthread workers)."""

    def __init__(self, ttl_s: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _digest(plaintext: str) -> bytes:
        return hashlib.sha256(plaintext.encode()).digest()

    def get(self, plaintext: str) -> Principal | None:
        if self.ttl_s <= 0:
            return None
        digest = self._digest(plaintext)
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            if self.clock() >= entry[0]:
                del self._entries[digest]
                return None
            return entry[1]

    def put(self, plaintext: str, principal: Principal) -> None:
        if self.ttl_s <= 0:
            return
        now = self.clock()
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries = {d: e for d, e in self._entries.items() if e[0] > now}
                if len(self._entries) >= self.max_entries:
                    self._entries.clear()
            self._entries[self._digest(plaintext)] = (now + self.ttl_s, principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def revoke_key(session: Session, prefix: str) -> bool:
    record = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if record is None:
        return False
    if record.revoked_at is None:
        record.revoked_at = datetime.now(UTC)
    return True
