"""URL vetting against SSRF, shared by the API (a webhook or source URL at job creation) and the workers (at send
or fetch time), and the pinned HTTP session both senders use.

A URL is resolved once; every address it resolves to must be globally routable, and the sender then
connects to the vetted address itself, so a DNS answer cannot change between the check and the connection.

IPv6 is judged by our own table, not by ``ipaddress``'s ``is_global``: that calls several forms that carry an
IPv4 address (NAT64, IPv4-compatible, 6to4) global whatever IPv4 they carry, and its answers change between
Python patch releases. Only 2000::/3 is routed on the internet, less its special ranges; outside it only an
IPv4-mapped address and the NAT64 well-known prefix pass, and only when their IPv4 address passes.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V6 = ipaddress.IPv6Network
_GLOBAL_UNICAST = _V6("2000::/3")
# Judged by the IPv4 address they carry: an IPv4-mapped address (::ffff:0:0/96) is that IPv4 host on a
# dual-stack socket, and the well-known NAT64 prefix is what DNS64 gives an IPv6-only host for every public
# IPv4 name (RFC 6052 forbids it for non-global IPv4, which a NAT64 gateway may still translate).
_NAT64 = _V6("64:ff9b::/96")
_IPV4_COMPATIBLE = _V6("::/96")
# Refused whole, whatever they embed: deprecated or local-only mechanisms that no webhook receiver uses, where
# a tunnel, relay or translator of the sender's network decides where the packet goes.
_REFUSED_RANGES: tuple[tuple[ipaddress.IPv6Network, str], ...] = (
    (_IPV4_COMPATIBLE, "IPv4-compatible (deprecated, RFC 4291)"),
    (_V6("::ffff:0:0:0/96"), "IPv4-translated (SIIT, local to a translator)"),
    (_V6("64:ff9b:1::/48"), "local-use NAT64 (RFC 8215; the IPv4 position is the operator's choice)"),
    (_V6("100::/64"), "discard-only"),
    (_V6("2001::/32"), "Teredo (a tunnel to an IPv4 client)"),
    (_V6("2001::/23"), "IETF special-purpose (benchmarking, ORCHID, anycast services)"),
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("2002::/16"), "6to4 (deprecated, RFC 7526; a tunnel to the embedded IPv4)"),
    (_V6("fc00::/7"), "unique-local (private)"),
    (_V6("fe80::/10"), "link-local"),
    (_V6("fec0::/10"), "site-local (deprecated)"),
    (_V6("ff00::/8"), "multicast"),
)
# An ISATAP interface id ([02]00:5efe:a.b.c.d, RFC 5214) sends the packet over IPv4 to a.b.c.d from the
# prefix's ISATAP router; any prefix can carry one, so the embedded IPv4 is judged, not the range.
_ISATAP_MASK, _ISATAP_ID = 0xFCFFFFFF, 0x00005EFE


class UnsafeUrlError(ValueError):
    """The URL is not an acceptable target (a webhook's, or a job's source_url)."""


class UnresolvableHost(UnsafeUrlError):
    """The URL's host does not resolve: unreachable rather than refused."""


@dataclass(frozen=True)
class VettedTarget:
    url: str
    scheme: str
    host: str
    port: int
    ip: str


def _refusal_v4(ip: ipaddress.IPv4Address) -> str | None:
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    # is_global is False for private, CGNAT (100.64/10), documentation and reserved ranges.
    if not ip.is_global:
        return "private or reserved"
    return None


def _low_v4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)


def _embedding(kind: str, v4: ipaddress.IPv4Address) -> str | None:
    reason = _refusal_v4(v4)
    return f"{kind} of {reason} {v4}" if reason else None


def _describe(kind: str, ip: ipaddress.IPv6Address) -> str:
    """Name the IPv4 addresses a refused transition address carries, so the refusal explains itself."""
    if ip.teredo is not None:
        server, client = ip.teredo
        return f"{kind}: server {server}, client {client}"
    if ip.sixtofour is not None:
        return f"{kind}: embeds {ip.sixtofour}"
    if ip in _IPV4_COMPATIBLE:
        return f"{kind}: embeds {_low_v4(ip)}"
    return kind


def _refusal_v6(ip: ipaddress.IPv6Address) -> str | None:
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_loopback:
        return "loopback"
    if (mapped := ip.ipv4_mapped) is not None:
        return _embedding("IPv4-mapped form", mapped)
    if ip in _NAT64:
        return _embedding("NAT64 form", _low_v4(ip))
    for network, kind in _REFUSED_RANGES:
        if ip in network:
            return _describe(kind, ip)
    if ip not in _GLOBAL_UNICAST:
        return "reserved (outside the global unicast range 2000::/3)"
    if (int(ip) >> 32) & _ISATAP_MASK == _ISATAP_ID:
        return _embedding("ISATAP interface id", _low_v4(ip))
    return None


def _refusal(ip: IPAddress) -> str | None:
    return _refusal_v6(ip) if isinstance(ip, ipaddress.IPv6Address) else _refusal_v4(ip)


def check_url_form(url: str, allow_private: bool = False, what: str = "webhook URL") -> tuple[str, str, int]:
    """The checks that need no DNS: length, http(s), a host, no credentials, a valid port, and no refused IP
    literal. Returns (scheme, host, port)."""
    if len(url) > 2048:
        raise UnsafeUrlError(f"{what} is longer than 2048 characters")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise UnsafeUrlError(f"{what} must use http or https")
    if not parts.hostname:
        raise UnsafeUrlError(f"{what} has no host")
    if parts.username or parts.password:
        raise UnsafeUrlError(f"{what} must not carry credentials")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise UnsafeUrlError(f"{what} has an invalid port") from exc
    try:
        literal: IPAddress | None = ipaddress.ip_address(parts.hostname.split("%")[0])
    except ValueError:
        literal = None
    if literal is not None and not allow_private and (reason := _refusal(literal)):
        raise UnsafeUrlError(f"{what} points at {literal} ({reason}), which is refused")
    return parts.scheme, parts.hostname, port


def vet_url(url: str, allow_private: bool = False, what: str = "webhook URL") -> VettedTarget:
    """check_url_form, then resolve the host once and refuse it if any address it resolves to is not global."""
    scheme, host, port = check_url_form(url, allow_private, what)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHost(f"{what} host {host!r} does not resolve") from exc
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
    if not addresses:
        raise UnresolvableHost(f"{what} host {host!r} does not resolve")
    if not allow_private:
        for ip in addresses:
            reason = _refusal(ip)
            if reason:
                raise UnsafeUrlError(f"{what} host resolves to {ip} ({reason}), which is refused")
    return VettedTarget(url=url, scheme=scheme, host=host, port=port, ip=str(addresses[0]))


class _PinnedTLSAdapter(HTTPAdapter):
    """Connect to a vetted IP while verifying the certificate (and sending SNI) for the original host."""

    def __init__(self, hostname: str) -> None:
        self._hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self._hostname
        kwargs["assert_hostname"] = self._hostname
        super().init_poolmanager(*args, **kwargs)


@dataclass(frozen=True)
class PinnedRequest:
    """A vetted target as requests sends it: to the vetted address, with the Host header of the URL's name."""

    url: str
    host_header: str


def pinned_session(target: VettedTarget) -> tuple[requests.Session, PinnedRequest]:
    """A session that connects to ``target.ip`` only (no proxy from the environment, TLS checked for the name);
    the caller sends ``allow_redirects=False`` and vets any redirect itself."""
    parts = urlsplit(target.url)
    ip_host = f"[{target.ip}]" if ":" in target.ip else target.ip
    pinned = urlunsplit((parts.scheme, f"{ip_host}:{target.port}", parts.path or "/", parts.query, ""))
    session = requests.Session()
    session.trust_env = False  # never route a vetted request through an environment proxy
    if target.scheme == "https":
        session.mount("https://", _PinnedTLSAdapter(target.host))
    return session, PinnedRequest(pinned, parts.netloc.rsplit("@", 1)[-1])
