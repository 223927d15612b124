"""Strict PyTorch checkpoint loading: every key matched, every shape right, or an error that names them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

# Wrappers that training scripts put around the state dict, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# Prefixes that DataParallel and DeepfakeBench's detector wrappers add to every key.
_PREFIXES = ("module.", "backbone.")
_MAX_LISTED = 40


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit the architecture it is loaded into."""


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a torch checkpoint safely (weights_only) and unwrap `state_dict` / `model` wrappers."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types (pickle, zip, unsafe global); name the file
        raise CheckpointError(f"cannot read checkpoint {path.name}: {exc}") from exc
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        wrapper = next((k for k in _WRAPPER_KEYS if k in obj), None)
        if wrapper is None:
            bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
            raise CheckpointError(f"{path.name}: not a state dict, non-tensor entries: {_listed(map(str, bad))}")
        obj = obj[wrapper]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path.name}: expected a non-empty state dict, got {type(obj).__name__}")
    return dict(obj)


def strip_prefixes(state: Mapping[str, torch.Tensor], model_keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """Drop a wrapper prefix shared by every key, unless the model's own keys carry it too."""
    model_keys = list(model_keys)
    out = dict(state)
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in out) and not any(k.startswith(prefix) for k in model_keys):
            out = {k.removeprefix(prefix): v for k, v in out.items()}
    return out


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` into `model`; any missing, unexpected or mis-shaped key raises CheckpointError."""
    expected = model.state_dict()
    missing = expected.keys() - state.keys()
    unexpected = state.keys() - expected.keys()
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} != {tuple(expected[k].shape)}"
        for k in expected.keys() & state.keys()
        if state[k].shape != expected[k].shape
    ]
    if mis_shaped:
        problems.append(f"shape mismatches: {_listed(mis_shaped)}")
    if problems:
        raise CheckpointError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


def load_checkpoint(model: nn.Module, path: Path) -> None:
    """Read a torch checkpoint and load it strictly into `model`."""
    state = strip_prefixes(read_state_dict(path), model.state_dict().keys())
    load_strict(model, state, source=path.name)
