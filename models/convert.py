"""Offline conversion of a whole pickled model (e.g. FaceForensics++'s `all_c23.p`) into a plain state dict.

This is the only place in Verity that unpickles without restriction. Unpickling runs whatever code the file
names, so run it by hand (`verity-pack convert-pickle SRC DST`) on a file you trust, never inside the service;
the service then reads DST with the weights-only reader in `models.checkpoint`.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import types
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import torch
from torch import nn

from models.checkpoint import CheckpointError, check_state_dict

# Where the weights sit when the pickled object is a training script's dict rather than the module itself.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")


class ConversionError(CheckpointError):
    """The file cannot be converted, or converting it would overwrite an existing file."""


@dataclass(frozen=True)
class ConversionResult:
    dst: Path
    sha256: str  # of dst, also written to dst's `.sha256` sidecar
    n_tensors: int
    top_level_class: str  # "module.qualname" of the unpickled object, e.g. network.models.TransferModel
    stand_ins: tuple[str, ...]  # classes that could not be imported and were replaced by empty nn.Modules


def _stand_in_pickle_module(made: dict[str, type[nn.Module]]) -> types.SimpleNamespace:
    """A pickle module for torch.load whose Unpickler replaces classes it cannot import with stand-ins.

    A release's own classes (FF++'s `network.xception.Xception`, ...) live in a package that is not installed
    here. A stand-in subclasses nn.Module, so nn.Module.__setstate__ restores the pickled `_parameters`,
    `_buffers` and `_modules` and `.state_dict()` walks the tree as the original would; forward() is never needed.
    """

    class Unpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                full = f"{module}.{name}"
                if full not in made:
                    made[full] = type(name, (nn.Module,), {"__module__": module, "__qualname__": name})
                return made[full]

    def load(file: IO[bytes], **kwargs: Any) -> Any:
        return Unpickler(file, **kwargs).load()

    # torch.load reads `Unpickler`, `load` and `__name__` (to spot dill) from its pickle_module.
    return types.SimpleNamespace(__name__="verity_stand_in_pickle", Unpickler=Unpickler, load=load)


def _weights_of(obj: object, source: str) -> Mapping[str, Any]:
    if isinstance(obj, nn.Module):
        return obj.state_dict()
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        key = next((k for k in _WRAPPER_KEYS if k in obj), None)
        if key is not None:
            return _weights_of(obj[key], source)
        raise ConversionError(f"{source}: no module or state dict in it, a dict with keys {sorted(map(str, obj))}")
    raise ConversionError(f"{source}: holds a {type(obj).__name__}, not a module or a state dict")


def convert_pickled_module(src: Path, dst: Path) -> ConversionResult:
    """Unpickle `src` WITHOUT restriction (trusted files only, offline) and write its weights to `dst`.

    `src` is a whole pickled nn.Module (torch.save(model), zip or pre-1.6 legacy format), or a dict holding one
    or a state dict under `state_dict` / `model` / `model_state_dict`. Classes that cannot be imported
    are replaced by nn.Module stand-ins. `dst` gets `torch.save(state_dict)` (zip format) and `dst.sha256` the
    digest in sha256sum's format. Refuses (ConversionError) when dst or its sidecar exists, when unpickling
    fails, and when the weights are empty or hold non-tensor entries.
    """
    sidecar = dst.with_name(dst.name + ".sha256")
    for target in (dst, sidecar):
        if target.exists():
            raise ConversionError(f"{target} exists; refusing to overwrite it (remove it or choose another DST)")
    made: dict[str, type[nn.Module]] = {}
    try:
        with warnings.catch_warnings():
            # The file records its classes' 2019 source; for extracting weights a changed or missing source
            # does not matter, and stand-ins have none.
            warnings.simplefilter("ignore", torch.serialization.SourceChangeWarning)
            warnings.filterwarnings("ignore", message="Couldn't retrieve source code")
            obj = torch.load(src, map_location="cpu", weights_only=False, pickle_module=_stand_in_pickle_module(made))
    except Exception as exc:  # anything the pickle or torch's readers raise: the file is not convertible
        raise ConversionError(f"cannot unpickle {src.name}: {type(exc).__name__}: {exc}") from exc
    state = _weights_of(obj, src.name)
    try:
        n_tensors = len(check_state_dict(state, src.name))
    except CheckpointError as exc:
        raise ConversionError(str(exc)) from exc
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    with open(dst, "xb") as fh:  # exclusive: a DST that appeared since the check above is not overwritten either
        try:
            fh.write(data)
            with open(sidecar, "x") as side:
                side.write(f"{digest}  {dst.name}\n")
        except BaseException:
            dst.unlink()  # no half-written or unverifiable DST is left behind
            raise
    cls = type(obj)
    return ConversionResult(dst, digest, n_tensors, f"{cls.__module__}.{cls.__qualname__}", tuple(sorted(made)))
