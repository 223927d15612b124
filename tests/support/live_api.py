"""The client tests' view of a live API: a tenant of their own and jobs written straight to the database."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from tests.conftest import insert_job

# The live server remembers a checked API key this long (VERITY_API_KEY_CACHE_S): a revoked key is refused after it.
LIVE_API_KEY_CACHE_S = 0.2


@dataclass(frozen=True)
class Tenant:
    """Keys of a tenant of its own, so job listings see only one module's jobs."""

    name: str
    submitter: str
    moderator: str


def new_tenant() -> Tenant:
    from db.apikeys import create_key
    from db.session import session_scope

    name = f"client-{uuid.uuid4().hex[:8]}"
    with session_scope() as s:
        submitter = create_key(s, "client-submitter", name, "submitter").plaintext
        moderator = create_key(s, "client-moderator", name, "moderator").plaintext
    return Tenant(name, submitter, moderator)


def make_job(tenant: str, status: str = "RUNNING", **values: Any) -> str:
    return str(insert_job(tenant, status, **values))
