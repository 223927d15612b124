"""Fetch a job's source_url: the first stage of a job submitted by URL (Stage.FETCHING).

Every hop, the URL and each redirect, is vetted by core.netguard (resolved once, every address global unless
VERITY_SOURCE_ALLOW_PRIVATE) and connected to at the vetted address, so a redirect or a DNS answer cannot lead the
worker into the private network. The body is bounded while it streams: VERITY_MAX_UPLOAD_BYTES, a connect and a
read timeout per hop and VERITY_SOURCE_TIMEOUT_S in all. It lands in a local file that must pass the upload's own
admission checks (core.media.admit) before the caller stores it, so a refused source leaves nothing in the bucket.
No site-specific scraping: the URL must serve the media itself.
"""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import urljoin

import requests
from urllib3.exceptions import HTTPError, ReadTimeoutError

from core.media.admit import Admitted, admit_file
from core.netguard import UnresolvableHost, UnsafeUrlError, VettedTarget, pinned_session, vet_url
from core.settings import Settings
from core.vocabulary import SourceError

MAX_REDIRECTS = 5
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 30.0
CHUNK = 64 * 1024
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


class SourceFailure(Exception):
    """The source could not be fetched; the job fails with ``code`` (the submitter's problem, never retried)."""

    def __init__(self, code: SourceError, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _vet(url: str, settings: Settings) -> VettedTarget:
    try:
        return vet_url(url, allow_private=settings.source_allow_private, what="source URL")
    except UnresolvableHost as exc:
        raise SourceFailure(SourceError.UNREACHABLE, str(exc)) from exc
    except UnsafeUrlError as exc:
        raise SourceFailure(SourceError.REFUSED, str(exc)) from exc


def _left(deadline: float, settings: Settings) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise SourceFailure(SourceError.TIMEOUT, f"the source took longer than {settings.source_timeout_s:g} s")
    return left


def _too_large(settings: Settings) -> SourceFailure:
    return SourceFailure(SourceError.TOO_LARGE, f"the source is larger than {settings.max_upload_bytes} bytes")


def _save(response: requests.Response, dest: Path, deadline: float, settings: Settings) -> None:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > settings.max_upload_bytes:
        raise _too_large(settings)
    size = 0
    with dest.open("wb") as out:
        try:
            # read1 returns what one read of the socket gives: a source that trickles is still measured against
            # the deadline between reads, and one that goes silent hits the read timeout.
            while chunk := response.raw.read1(CHUNK):
                size += len(chunk)
                if size > settings.max_upload_bytes:
                    raise _too_large(settings)
                out.write(chunk)
                _left(deadline, settings)
        except ReadTimeoutError as exc:
            raise SourceFailure(SourceError.TIMEOUT, f"the source stopped sending for {READ_TIMEOUT_S:g} s") from exc
        except (HTTPError, OSError) as exc:
            raise SourceFailure(SourceError.UNREACHABLE, f"reading the source failed: {exc}"[:500]) from exc


def _get(target: VettedTarget, deadline: float, settings: Settings) -> requests.Response:
    session, pinned = pinned_session(target)
    left = _left(deadline, settings)
    try:
        return session.get(
            pinned.url,
            headers={"Host": pinned.host_header, "Accept-Encoding": "identity", "User-Agent": "Verity-Fetch/1"},
            timeout=(min(CONNECT_TIMEOUT_S, left), min(READ_TIMEOUT_S, left)),
            allow_redirects=False,
            stream=True,
        )
    except requests.Timeout as exc:
        raise SourceFailure(SourceError.TIMEOUT, f"the source did not answer in time: {exc}"[:500]) from exc
    except requests.RequestException as exc:
        raise SourceFailure(SourceError.UNREACHABLE, f"the source is unreachable: {exc}"[:500]) from exc
    finally:
        session.close()  # the response keeps its own connection until it is closed


def fetch_source(url: str, dest: Path, settings: Settings) -> Admitted:
    """Download ``url`` to ``dest`` within the limits and admit it as an upload would be (MediaError if not)."""
    deadline = time.monotonic() + settings.source_timeout_s
    for _ in range(MAX_REDIRECTS + 1):
        with _get(_vet(url, settings), deadline, settings) as response:
            location = response.headers.get("Location")
            if response.status_code in _REDIRECT_STATUSES and location:
                url = urljoin(url, location)  # vetted again, like the first hop
                continue
            if not 200 <= response.status_code < 300:
                raise SourceFailure(SourceError.UNREACHABLE, f"the source answered HTTP {response.status_code}")
            _save(response, dest, deadline, settings)
        return admit_file(dest, settings.accepted_codecs)
    raise SourceFailure(SourceError.UNREACHABLE, f"the source redirected more than {MAX_REDIRECTS} times")
