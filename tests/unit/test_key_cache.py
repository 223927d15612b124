"""The per-process API-key cache (db.apikeys.KeyCache): entries expire after the TTL, 0 turns it off, it stays
bounded, and it only ever answers for the exact key that was checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.env import SettingsError
from core.settings import load_settings
from db.apikeys import KeyCache, Principal

ALICE = Principal(id=1, name="alice", tenant="acme", role="submitter", prefix="a" * 12)
KEY = "vrt_aaaaaaaaaaaa_secret"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_an_entry_lives_exactly_the_ttl() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=5.0, clock=clock)
    assert cache.get(KEY) is None
    cache.put(KEY, ALICE)
    clock.now += 4.99
    assert cache.get(KEY) == ALICE
    clock.now += 0.01
    assert cache.get(KEY) is None
    assert len(cache) == 0  # the expired entry is dropped, not kept around


def test_only_the_exact_key_hits() -> None:
    cache = KeyCache(ttl_s=5.0)
    cache.put(KEY, ALICE)
    assert cache.get(KEY + "x") is None
    assert cache.get(KEY[:-1]) is None
    assert cache.get(KEY) == ALICE


def test_ttl_zero_never_remembers() -> None:
    cache = KeyCache(ttl_s=0)
    cache.put(KEY, ALICE)
    assert cache.get(KEY) is None and len(cache) == 0


def test_the_cache_stays_bounded() -> None:
    clock = Clock()
    cache = KeyCache(ttl_s=5.0, max_entries=3, clock=clock)
    for i in range(3):
        cache.put(f"{KEY}{i}", ALICE)
    clock.now += 10  # all three expired: making room drops them, not the live newcomer
    cache.put(KEY, ALICE)
    assert len(cache) == 1 and cache.get(KEY) == ALICE
    for i in range(5):
        cache.put(f"{KEY}{i}", ALICE)
    assert len(cache) <= 3


def test_the_ttl_setting_is_bounded(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("VERITY_HOME", str(tmp_path))
    assert load_settings().api_key_cache_s == 5.0
    monkeypatch.setenv("VERITY_API_KEY_CACHE_S", "0")
    assert load_settings().api_key_cache_s == 0
    for bad in ("-1", "61"):
        monkeypatch.setenv("VERITY_API_KEY_CACHE_S", bad)
        with pytest.raises(SettingsError, match="VERITY_API_KEY_CACHE_S"):
            load_settings()
