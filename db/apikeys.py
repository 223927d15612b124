"""API keys: generated once, shown once, stored as prefix + SHA-256 of the secret."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from db.models import ApiKey, Role

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


def revoke_key(session: Session, prefix: str) -> bool:
    record = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if record is None:
        return False
    if record.revoked_at is None:
        record.revoked_at = datetime.now(UTC)
    return True
