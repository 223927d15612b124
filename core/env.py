"""Typed values read from the environment, for core/settings.py: one rule per type, one error for them all."""

from __future__ import annotations

import os


class SettingsError(ValueError):
    """Configuration that Verity refuses to start with."""


def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def env_int(name: str, default: int) -> int:
    raw = env_str(name)
    try:
        return int(raw) if raw is not None else default
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = env_str(name)
    try:
        return float(raw) if raw is not None else default
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


def env_floats(name: str, default: tuple[float, ...]) -> tuple[float, ...]:
    """A comma-separated list of positive numbers, e.g. VERITY_WEBHOOK_BACKOFF_S="5,30,120"."""
    raw = env_str(name)
    if raw is None:
        return default
    try:
        values = tuple(float(part) for part in raw.split(",") if part.strip())
    except ValueError as exc:
        raise SettingsError(f"{name} must be comma-separated numbers, got {raw!r}") from exc
    if not values or any(v <= 0 for v in values):
        raise SettingsError(f"{name} must list at least one positive number, got {raw!r}")
    return values


def env_bool(name: str, default: bool) -> bool:
    raw = env_str(name)
    if raw is None:
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}
