"""Webhook URL vetting against SSRF, shared by the API (at job creation) and the workers (at send time).

A URL is resolved once; every address it resolves to must be globally routable, and the sender then
connects to the vetted address itself, so a DNS answer cannot change between the check and the connection.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrlError(ValueError):
    """The URL is not an acceptable webhook target."""


@dataclass(frozen=True)
class VettedTarget:
    url: str
    scheme: str
    host: str
    port: int
    ip: str


def _refusal(ip: IPAddress) -> str | None:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    if mapped is not None:
        return _refusal(mapped)
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    # is_global is False for private, CGNAT (100.64/10), ULA, documentation and reserved ranges.
    if not ip.is_global:
        return "private or reserved"
    return None


def vet_url(url: str, allow_private: bool = False) -> VettedTarget:
    if len(url) > 2048:
        raise UnsafeUrlError("webhook URL is longer than 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrlError("webhook URL must use http or https")
    if not parts.hostname:
        raise UnsafeUrlError("webhook URL has no host")
    if parts.username or parts.password:
        raise UnsafeUrlError("webhook URL must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrlError("webhook URL has an invalid port") from exc
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrlError(f"webhook host {parts.hostname!r} does not resolve") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    if not addresses:
        raise UnsafeUrlError(f"webhook host {parts.hostname!r} does not resolve")
    if not allow_private:
        for ip in addresses:
            reason = _refusal(ip)
            if reason:
                raise UnsafeUrlError(f"webhook host resolves to a {reason} address ({ip}), which is refused")
    return VettedTarget(url=url, scheme=parts.scheme, host=parts.hostname, port=port, ip=str(addresses[0]))
