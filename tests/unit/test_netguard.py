"""SSRF guard: only globally routable webhook targets pass, however the address is spelled."""

from __future__ import annotations

import pytest

from db.netguard import UnsafeUrlError, vet_url


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
