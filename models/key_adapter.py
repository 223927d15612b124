"""Declarative key adapters: a release's state-dict names -> the names of Verity's network.

An adapter only renames and drops keys it was told are unused; everything else passes through untouched, so
strict loading still sees (and names) any key that does not fit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import torch


class KeyAdapterError(ValueError):
    """Two release keys would land on the same name."""


@dataclass(frozen=True)
class KeyAdapter:
    """renames: (regex, replacement) pairs, the first that matches a key wins; drop: regexes of keys the
    release holds but the published network never uses (matched against the release's own names)."""

    renames: tuple[tuple[str, str], ...] = ()
    drop: tuple[str, ...] = ()

    def __call__(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if any(re.fullmatch(pattern, key) for pattern in self.drop):
                continue
            new = key
            for pattern, replacement in self.renames:
                if re.match(pattern, key):
                    new = re.sub(pattern, replacement, key, count=1)
                    break
            if new in out:
                raise KeyAdapterError(f"two checkpoint keys map to {new!r} (the second is {key!r})")
            out[new] = value
        return out

    def dropped(self, keys: list[str]) -> list[str]:
        return [k for k in keys if any(re.fullmatch(pattern, k) for pattern in self.drop)]
