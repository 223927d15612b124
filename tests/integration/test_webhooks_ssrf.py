"""SSRF: hostile webhook URLs are refused when the job is created and again when the webhook is sent, and a
canary listening on loopback never sees a connection (private targets not allowed, the default).

The send-time check matters on its own: a URL can be stored while private targets were allowed, or a name
can resolve differently later (DNS rebinding); the sender re-vets and connects to the vetted address.
"""

from __future__ import annotations

import dataclasses
import io
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from core.settings import Settings
from tests.conftest import Keys, Services, bearer, delivery_row, insert_delivery, shared_file
from tests.support.videos import CLIP
from tests.support.webhook_receiver import Canary, Receiver, Reply

# Spelled to reach the IPv4 canary: loopback by name, number, octal, hex, short form, unspecified, IPv4-mapped.
LOOPBACK_V4 = [
    "http://127.0.0.1:{p}/",
    "http://localhost:{p}/",
    "http://2130706433:{p}/",
    "http://0177.0.0.1:{p}/",
    "http://0x7f.0.0.1:{p}/",
    "http://127.1:{p}/",
    "http://0.0.0.0:{p}/",
    "http://0:{p}/",
    "http://[::ffff:127.0.0.1]:{p}/",
    "http://[::ffff:7f00:1]:{p}/",
    "https://127.0.0.1:{p}/",
]
LOOPBACK_V6 = ["http://[::1]:{p}/", "http://[::]:{p}/", "http://[0:0:0:0:0:0:0:1]:{p}/"]
# Never reachable here; refused before any connection is tried (an attempt would time out instead).
PRIVATE = [
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",
    "http://100.64.0.1/",
    "http://224.0.0.1/",
    "http://239.255.255.250/",
    "http://198.18.0.1/",
    "http://[fd00::1]/",
    "http://[fe80::1]/",
    "http://[ff02::1]/",
    "http://[::ffff:10.0.0.1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://0251.0376.0251.0376/",  # 169.254.169.254 in octal
    "http://2852039166/",  # 169.254.169.254 as one integer
    # IPv6 forms that carry a loopback, private or metadata IPv4 (Python's ipaddress calls some of them global).
    "http://[64:ff9b::7f00:1]/",  # NAT64
    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",
    "http://[64:ff9b:1::7f00:1]/",  # local-use NAT64
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[::a9fe:a9fe]/",
    "http://[::ffff:0:7f00:1]/",  # IPv4-translated
    "http://[2002:7f00:1::]/",  # 6to4
    "http://[2002:a9fe:a9fe::1]/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1 obfuscated
    "http://[2001:0:7f00:1::]/",  # Teredo, server 127.0.0.1
    "http://[2001:4860:1::5efe:a9fe:a9fe]/",  # ISATAP interface id
    "http://[100::1]/",  # discard
    "http://[2001:db8::1]/",  # documentation
    "http://[2001:20::1]/",  # ORCHIDv2
    "http://[fec0::1]/",  # site-local
]


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture
def canaries() -> Iterator[tuple[Canary, Canary | None]]:
    v4 = Canary()
    v6 = Canary("::1", socket.AF_INET6) if _ipv6_loopback() else None
    yield v4, v6
    v4.close()
    if v6 is not None:
        v6.close()


def _hostile_urls(canaries: tuple[Canary, Canary | None]) -> list[str]:
    v4, v6 = canaries
    urls = [u.format(p=v4.port) for u in LOOPBACK_V4] + PRIVATE
    if v6 is not None:
        urls += [u.format(p=v6.port) for u in LOOPBACK_V6]
    return urls


@pytest.fixture
def strict(services: Services) -> Settings:
    from core.settings import get_settings

    return dataclasses.replace(get_settings(), webhook_allow_private=False, webhook_timeout_s=1.0)


def test_send_time_refuses_every_private_target_and_the_canary_sees_nothing(
    strict: Settings, canaries: tuple[Canary, Canary | None]
) -> None:
    from workers import webhooks

    refused = {}
    for url in _hostile_urls(canaries):
        delivery_id = insert_delivery(url)  # stored as if accepted earlier (allowed then, or DNS changed since)
        assert webhooks.deliver(str(delivery_id), strict) == "failed", url
        row = delivery_row(delivery_id)
        assert row.attempts == 1 and row.last_status is None
        refused[url] = row.last_error
    assert all(err.startswith("refused: ") for err in refused.values()), refused
    assert canaries[0].connections == 0
    assert canaries[1] is None or canaries[1].connections == 0


def test_the_same_canary_is_reachable_when_private_targets_are_allowed(
    strict: Settings, canaries: tuple[Canary, Canary | None]
) -> None:
    """The control: the refusals above are the guard's doing, not an unreachable canary."""
    from workers import webhooks

    delivery_id = insert_delivery(f"http://127.0.0.1:{canaries[0].port}/")
    webhooks.deliver(str(delivery_id), dataclasses.replace(strict, webhook_allow_private=True))
    assert canaries[0].connections == 1


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_to_a_private_target_is_not_followed(
    strict: Settings, canaries: tuple[Canary, Canary | None], status: int
) -> None:
    from workers import webhooks

    targets = [f"http://127.0.0.1:{canaries[0].port}/", "http://169.254.169.254/latest/meta-data/"]
    for target in targets:
        redirector = Receiver([Reply(status, {"Location": target})])
        try:
            delivery_id = insert_delivery(redirector.url)
            # Private allowed only so the redirector itself (on loopback) can be reached at all.
            assert webhooks.deliver(str(delivery_id), dataclasses.replace(strict, webhook_allow_private=True))
            row = delivery_row(delivery_id)
            assert row.state == "pending" and row.last_status == status
            assert len(redirector.received) == 1
        finally:
            redirector.close()
    assert canaries[0].connections == 0


def test_job_creation_refuses_every_private_target(
    strict: Settings, keys: Keys, canaries: tuple[Canary, Canary | None]
) -> None:
    from sqlalchemy import func, select

    from api.app import create_app
    from db.models import Job
    from db.session import session_scope

    client = create_app(strict).test_client()
    clip = shared_file(CLIP).read_bytes()
    with session_scope() as s:
        before = s.scalar(select(func.count()).select_from(Job))
    codes = {}
    for url in _hostile_urls(canaries):
        response = client.post(
            "/v1/jobs",
            headers=bearer(keys.submitter),
            data={"file": (io.BytesIO(clip), "clip.mp4"), "webhook_url": url},
            content_type="multipart/form-data",
        )
        codes[url] = (response.status_code, (response.get_json() or {}).get("error", {}).get("code"))
    assert all(code == (422, "INVALID_WEBHOOK_URL") for code in codes.values()), codes
    with session_scope() as s:
        assert s.scalar(select(func.count()).select_from(Job)) == before, "no job was created"
    assert canaries[0].connections == 0
    assert canaries[1] is None or canaries[1].connections == 0


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names under .example.test resolve as a DNS64 or rebinding server might answer; others as usual."""
    answers = {
        "dns64-loopback.example.test": ["64:ff9b::7f00:1"],
        "mixed.example.test": ["64:ff9b::808:808", "2002:a9fe:a9fe::1"],
        "dns64-public.example.test": ["64:ff9b::808:808"],
    }
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in answers:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET6, socket.SOCK_STREAM, 6, "", (a, port, 0, 0)) for a in answers[host]]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def test_names_resolving_to_embedded_private_ipv4_are_refused_and_public_nat64_is_pinned(
    strict: Settings, keys: Keys, resolver: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from api.app import create_app
    from core.netguard import VettedTarget
    from workers import webhooks

    client = create_app(strict).test_client()
    clip = shared_file(CLIP).read_bytes()
    for url in ("http://dns64-loopback.example.test/", "http://mixed.example.test/"):
        delivery_id = insert_delivery(url)
        assert webhooks.deliver(str(delivery_id), strict) == "failed", url
        assert delivery_row(delivery_id).last_error.startswith("refused: "), url
        response = client.post(
            "/v1/jobs",
            headers=bearer(keys.submitter),
            data={"file": (io.BytesIO(clip), "clip.mp4"), "webhook_url": url},
            content_type="multipart/form-data",
        )
        assert response.status_code == 422, (url, response.get_json())

    # A public IPv4 behind the NAT64 prefix passes, and the sender connects to that vetted address (no
    # connection leaves the test: the send itself is stubbed).
    sent: list[VettedTarget] = []

    def post_pinned(target: VettedTarget, *args: Any) -> webhooks.SendOutcome:
        sent.append(target)
        return webhooks.SendOutcome(204, None, None)

    monkeypatch.setattr(webhooks, "post_pinned", post_pinned)
    delivery_id = insert_delivery("https://dns64-public.example.test/hook")
    assert webhooks.deliver(str(delivery_id), strict) == "delivered"
    assert [(t.host, t.ip) for t in sent] == [("dns64-public.example.test", "64:ff9b::808:808")]
