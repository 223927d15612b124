"""SSRF guard: only globally routable webhook targets pass, however the address is spelled."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from typing import Any

import pytest

from core.netguard import UnsafeUrlError, vet_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://localhost:8080/hook",
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://192.168.1.10/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",  # CGNAT
        "http://224.0.0.1/",  # multicast
        "http://0.0.0.0/",
        "http://[::1]/",
        "http://[fd00::1]/",  # IPv6 ULA
        "http://[::ffff:127.0.0.1]/",  # IPv4-mapped IPv6
        "http://2130706433/",  # 127.0.0.1 as an integer
        "http://0177.0.0.1/",  # octal spelling
        "http://0x7f.0.0.1/",
    ],
)
def test_private_targets_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        vet_url(url)


@pytest.mark.parametrize(
    "url",
    ["ftp://example.com/x", "file:///etc/passwd", "http://user:pw@8.8.8.8/", "gopher://8.8.8.8/", "http:///x"],
)
def test_bad_schemes_and_shapes_are_refused(url: str) -> None:
    with pytest.raises(UnsafeUrlError):
        vet_url(url)


def test_public_literal_address_passes_and_is_pinned() -> None:
    target = vet_url("https://8.8.8.8:8443/hooks?x=1")
    assert (target.ip, target.port, target.scheme, target.host) == ("8.8.8.8", 8443, "https", "8.8.8.8")


def test_private_targets_allowed_only_when_configured() -> None:
    assert vet_url("http://127.0.0.1:9/x", allow_private=True).ip == "127.0.0.1"


# IPv6 forms that carry an IPv4 address, and the other special ranges; each with the reason it is refused.
# Python's ipaddress calls several of these global, so each is named here literally.
REFUSED_V6 = [
    ("64:ff9b::7f00:1", "NAT64 form of loopback 127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "NAT64 form of link-local 169.254.169.254"),
    ("64:ff9b::10.0.0.1", "NAT64 form of private or reserved 10.0.0.1"),
    ("64:ff9b::6440:1", "NAT64 form of private or reserved 100.64.0.1"),
    ("64:ff9b::", "NAT64 form of unspecified 0.0.0.0"),
    ("64:ff9b::e000:1", "NAT64 form of multicast 224.0.0.1"),
    ("64:ff9b:1::7f00:1", "local-use NAT64"),
    ("64:ff9b:1::808:808", "local-use NAT64"),  # whole range: where the IPv4 sits is the operator's choice
    ("64:ff9b::1:808:808", "reserved"),  # not the /96 well-known prefix
    ("::127.0.0.1", "IPv4-compatible (deprecated, RFC 4291): embeds 127.0.0.1"),
    ("::7f00:1", "IPv4-compatible"),
    ("::169.254.169.254", "IPv4-compatible (deprecated, RFC 4291): embeds 169.254.169.254"),
    ("::8.8.8.8", "IPv4-compatible (deprecated, RFC 4291): embeds 8.8.8.8"),  # whole range: deprecated
    ("::ffff:127.0.0.1", "IPv4-mapped form of loopback 127.0.0.1"),
    ("::ffff:169.254.169.254", "IPv4-mapped form of link-local 169.254.169.254"),
    ("::ffff:a9fe:a9fe", "IPv4-mapped form of link-local 169.254.169.254"),
    ("::ffff:0:7f00:1", "IPv4-translated"),
    ("::ffff:0:808:808", "IPv4-translated"),
    ("2002:7f00:1::", "6to4 (deprecated, RFC 7526; a tunnel to the embedded IPv4): embeds 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 (deprecated, RFC 7526; a tunnel to the embedded IPv4): embeds 169.254.169.254"),
    ("2002:c0a8:101:1::1", "embeds 192.168.1.1"),
    ("2002:808:808::1", "6to4 (deprecated, RFC 7526; a tunnel to the embedded IPv4): embeds 8.8.8.8"),
    # Teredo: server 65.54.227.120, client 127.0.0.1 obfuscated (XOR 0xffffffff) into 80ff:fffe.
    (
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "Teredo (a tunnel to an IPv4 client): server 65.54.227.120, client 127.0.0.1",
    ),
    ("2001:0:4136:e378:8000:63bf:5601:5601", "client 169.254.169.254"),
    ("2001:0:7f00:1:8000:63bf:f7f7:f7f7", "server 127.0.0.1, client 8.8.8.8"),
    ("2001:0:4136:e378:8000:63bf:f7f7:f7f7", "server 65.54.227.120, client 8.8.8.8"),  # whole range
    ("2001:4860:1::5efe:7f00:1", "ISATAP interface id of loopback 127.0.0.1"),
    ("2001:4860:1:0:200:5efe:a9fe:a9fe", "ISATAP interface id of link-local 169.254.169.254"),
    ("2001:4860:1::5efe:a00:1", "ISATAP interface id of private or reserved 10.0.0.1"),
    ("100::1", "discard-only"),
    ("2001:db8::1", "documentation"),
    ("3fff::1", "documentation"),
    ("2001:10::1", "IETF special-purpose"),  # ORCHID
    ("2001:20::1", "IETF special-purpose"),  # ORCHIDv2
    ("2001:2::1", "IETF special-purpose"),  # benchmarking
    ("fc00::1", "unique-local"),
    ("fd12:3456::1", "unique-local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),  # global-scope multicast is still multicast
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("5f00::1", "reserved"),
    ("4000::1", "reserved"),
]


@pytest.mark.parametrize(("address", "reason"), REFUSED_V6, ids=[a for a, _ in REFUSED_V6])
def test_ipv6_forms_are_refused_with_the_embedded_ipv4_named(address: str, reason: str) -> None:
    with pytest.raises(UnsafeUrlError) as refused:
        vet_url(f"http://[{address}]:8080/hook")
    assert reason in str(refused.value)


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::808:808",  # NAT64 of 8.8.8.8: what DNS64 gives an IPv6-only host for a public IPv4 name
        "64:ff9b::8.8.8.8",
        "::ffff:8.8.8.8",  # IPv4-mapped: it is 8.8.8.8 on a dual-stack socket
        "2001:4860:1::5efe:808:808",  # an ISATAP-style interface id over a public IPv4
        "2001:4860:4860::8888",
        "2a00:1450:4001::1",
    ],
)
def test_ipv6_forms_with_a_public_embedded_ipv4_pass_and_are_pinned(address: str) -> None:
    target = vet_url(f"https://[{address}]/hook")
    assert target.ip == str(ipaddress.ip_address(address))
    assert target.port == 443


def _resolver(answers: dict[str, list[str]]) -> Callable[..., list[tuple[Any, ...]]]:
    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "no such name in the test resolver")
        out: list[tuple[Any, ...]] = []
        for address in answers[host]:
            if ":" in address:
                out.append((socket.AF_INET6, socket.SOCK_STREAM, 6, "", (address, port, 0, 0)))
            else:
                out.append((socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)))
        return out

    return getaddrinfo


def test_every_resolved_address_is_vetted_not_only_the_first(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = {
        "dns64.example.test": ["64:ff9b::808:808", "8.8.8.8"],
        "mixed.example.test": ["8.8.8.8", "64:ff9b::a9fe:a9fe"],
        "sixtofour.example.test": ["2002:7f00:1::1"],
        "teredo.example.test": ["2001:4860:4860::8888", "2001:0:4136:e378:8000:63bf:80ff:fffe"],
    }
    monkeypatch.setattr(socket, "getaddrinfo", _resolver(answers))  # what core.netguard calls
    target = vet_url("https://dns64.example.test/hook")
    assert (target.host, target.ip) == ("dns64.example.test", "64:ff9b::808:808")  # connects to what was vetted
    for host, embedded in (("mixed", "169.254.169.254"), ("sixtofour", "127.0.0.1"), ("teredo", "127.0.0.1")):
        with pytest.raises(UnsafeUrlError, match=embedded.replace(".", r"\.")):
            vet_url(f"https://{host}.example.test/hook")
    with pytest.raises(UnsafeUrlError, match="does not resolve"):
        vet_url("https://absent.example.test/hook")
    assert vet_url("https://mixed.example.test/hook", allow_private=True).ip == "8.8.8.8"
