"""File checksums for model checkpoints (stdlib only, shared by the loader and the test-pack script)."""

from __future__ import annotations

import hashlib
from pathlib import Path

_CHUNK = 1 << 20


class ChecksumError(Exception):
    """A checkpoint's sha256 differs from the one its manifest records."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ChecksumError(f"sha256 mismatch for {path.name}: manifest says {expected}, file is {actual}")
