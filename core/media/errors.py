"""The one exception type media code raises for bad input files."""

from typing import Literal

MediaErrorCode = Literal[
    # Not a container or codec we accept (HTTP 415). Named as the API's other 415s, so a client handles one code.
    "UNSUPPORTED_MEDIA_TYPE",
    "EMPTY_FILE",  # no bytes at all (400)
    "CORRUPT_MEDIA",  # an accepted container we cannot parse, e.g. empty or truncated (422)
    "NO_VIDEO_STREAM",  # a valid container without a video stream (422)
    "LIMIT_EXCEEDED",  # resolution / duration / frame count over the configured limits (422)
    "DECODE_FAILED",  # metadata was fine but no frame could be decoded (422)
]


class MediaError(Exception):
    """A user file we refuse, with a stable machine `code` and a human `message`."""

    def __init__(self, code: MediaErrorCode, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code: MediaErrorCode = code
        self.message = message
