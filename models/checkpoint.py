"""Safe, strict PyTorch checkpoint loading: every key matched, every shape right, or an error that names them.

Files are only ever read with ``torch.load(weights_only=True)``: tensors, plain containers and numeric numpy
scalars. A file that pickles anything else (a whole nn.Module, an argparse.Namespace, ...) is refused, since
unpickling it would run code named by the file; `models.convert` turns a trusted one into a plain state dict.
"""

from __future__ import annotations

import pickle
import re
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy._core.multiarray import scalar as _numpy_scalar  # numpy 2 home of the scalar reconstructor
from torch import nn

# Wrappers that training scripts put around the state dict, tried in this order.
_WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")
# Prefixes that DataParallel and DeepfakeBench's detector wrappers add to every key.
_PREFIXES = ("module.", "backbone.")
_MAX_LISTED = 40
CONVERT_COMMAND = "verity-pack convert-pickle"

# Training scripts store best scores and counters as numpy scalars (the DFDC winner's 'bce_best' is a float64).
# A scalar is rebuilt from a dtype and raw bytes; numpy refuses object dtypes there, and the weights_only
# unpickler only completes (BUILD) dtypes of the classes listed here, so this admits numbers and nothing else.
_NUMERIC_DTYPES = (
    np.dtypes.BoolDType,
    np.dtypes.Int8DType,
    np.dtypes.Int16DType,
    np.dtypes.Int32DType,
    np.dtypes.Int64DType,
    np.dtypes.UInt8DType,
    np.dtypes.UInt16DType,
    np.dtypes.UInt32DType,
    np.dtypes.UInt64DType,
    np.dtypes.Float16DType,
    np.dtypes.Float32DType,
    np.dtypes.Float64DType,
)
_NUMPY_SCALAR_GLOBALS: list[Any] = [
    _numpy_scalar,  # as numpy 2 pickles it
    (_numpy_scalar, "numpy.core.multiarray.scalar"),  # as numpy 1.x pickled it (older releases)
    np.dtype,
    *_NUMERIC_DTYPES,
]

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_REFUSED_GLOBAL = re.compile(r"Unsupported global: GLOBAL (\S+) was not an allowed global")
_REFUSED_BUILD = re.compile(r"(?:Can only build|Can only create new object)\b.* but got <class '([^']+)'>")


class CheckpointError(Exception):
    """A checkpoint cannot be read or does not fit the architecture it is loaded into."""


class NotATorchFileError(CheckpointError):
    """The file is not a torch checkpoint at all (HDF5, text, numpy, an unrelated zip or pickle, ...)."""


class UnsafeCheckpointError(CheckpointError):
    """The file pickles a global outside the weights-only allow-list (e.g. a whole nn.Module)."""

    def __init__(self, message: str, global_name: str | None) -> None:
        super().__init__(message)
        self.global_name = global_name


class WrapperMismatchError(CheckpointError):
    """The state dict is not at the path inside the file where the caller said it would be."""


class NotAStateDictError(CheckpointError):
    """What should be the state dict is empty, not a dict, or holds entries that are not tensors."""


def _listed(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:_MAX_LISTED])
    return shown + (f", ... ({len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else "")


class _NoGlobals(pickle.Unpickler):
    """Unpickles plain data only: any class or function the stream names is an error, so nothing runs."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"global {module}.{name}")


def _starts_with_torch_magic(path: Path) -> bool:
    # torch's pre-1.6 ("legacy") format opens with a pickled magic number, in whatever pickle protocol it used.
    with open(path, "rb") as fh:
        try:
            return bool(_NoGlobals(fh).load() == torch.serialization.MAGIC_NUMBER)
        except Exception:  # any malformed stream just means "not that header"
            return False


def _describe_non_torch(path: Path) -> str | None:
    """What the file looks like when it is not a torch checkpoint; None when it may well be one."""
    with open(path, "rb") as fh:
        head = fh.read(512)
    if not head:
        return "the file is empty"
    if head.startswith(b"\x80") and _starts_with_torch_magic(path):
        return None
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/code/") or "/code/__torch__/" in n for n in names):
            return "it is a TorchScript archive (torch.jit.save), which holds code; export a state dict instead"
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return None
        if names and all(n.endswith(".npy") for n in names):
            return "it is a NumPy .npz archive"
        return f"it is a zip archive without torch's data.pkl (entries: {_listed(names)})"
    if head.startswith(_HDF5_MAGIC):
        return "it is an HDF5 file (a Keras .h5 model?)"
    if head.startswith(b"\x93NUMPY"):
        return "it is a NumPy .npy array"
    if head.startswith(b"\x1f\x8b"):
        return "it is gzip-compressed data"
    if len(head) > 8 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < (1 << 30):
        return "it is a safetensors file"
    if head.startswith(b"\x80"):
        return "it is a Python pickle without torch's header (not written by torch.save)"
    if tarfile.is_tarfile(path):  # torch < 0.4 wrote tar archives: leave those to torch.load
        return None
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:  # a multi-byte character cut by the 512-byte read is still text
        text = head[: exc.start].decode("utf-8") if exc.start > len(head) - 4 else ""
    if text and all(c.isprintable() or c.isspace() for c in text):
        first = text.strip().splitlines()[0][:80] if text.strip() else ""
        if first.startswith("version https://git-lfs"):
            return "it is a Git LFS pointer: the weights themselves were never fetched (git lfs pull)"
        return f"it is a text file, starting {first!r}"
    return f"it is unrecognised binary data (first bytes {head[:16].hex(' ')})"


def read_checkpoint(path: Path) -> Any:
    """Unpickle a torch checkpoint (zip or legacy format) with weights_only=True and numeric numpy scalars allowed.

    Raises NotATorchFileError, UnsafeCheckpointError (naming the refused global), or CheckpointError.
    """
    name = path.name
    try:
        looks_like = _describe_non_torch(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"cannot read checkpoint {name}: {exc}") from exc
    if looks_like is not None:
        raise NotATorchFileError(f"cannot read checkpoint {name}: not a torch checkpoint, {looks_like}")
    try:
        with torch.serialization.safe_globals(_NUMPY_SCALAR_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _REFUSED_GLOBAL.search(str(exc)) or _REFUSED_BUILD.search(str(exc))
        if refused is None:
            raise CheckpointError(f"cannot read checkpoint {name}: {_first_reason(str(exc))}") from exc
        raise UnsafeCheckpointError(
            f"cannot read checkpoint {name}: it pickles {refused[1]}, which is not a tensor, a plain container or "
            f"a numeric numpy scalar; it is refused because unpickling it would run code named by the file. "
            f"If it is a whole pickled model from a source you trust, convert it offline into a plain state dict "
            f"with `{CONVERT_COMMAND} {path} DST` and use DST",
            refused[1],
        ) from None  # torch's own message suggests weights_only=False, which this loader never does
    except Exception as exc:  # zip, legacy-format and storage errors have several types: name the file
        raise CheckpointError(f"cannot read checkpoint {name}: {exc}") from exc


def _first_reason(message: str) -> str:
    # torch wraps weights-only failures in a paragraph recommending weights_only=False; keep its actual reason.
    for line in message.splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].strip()
    return message


def _summary(node: object) -> str:
    if isinstance(node, Mapping):
        if node and all(isinstance(v, torch.Tensor) for v in node.values()):
            return f"a state dict of {len(node)} tensors"
        return f"a dict with keys: {_listed(map(str, node))}"
    return f"a {type(node).__name__}"


def check_state_dict(node: object, source: str) -> dict[str, torch.Tensor]:
    """`node` as a state dict: a non-empty mapping of str to tensors, or NotAStateDictError naming the rest."""
    if not isinstance(node, Mapping):
        raise NotAStateDictError(f"{source}: expected a state dict (a dict of tensors), got {_summary(node)}")
    if not node:
        raise NotAStateDictError(f"{source}: the state dict is empty")
    bad = [f"{k} ({type(v).__name__})" for k, v in node.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise NotAStateDictError(f"{source}: not a state dict, non-tensor entries: {_listed(bad)}")
    return {str(k): v for k, v in node.items()}


def _descend(obj: object, wrapper: tuple[str, ...], name: str) -> object:
    node = obj
    for depth, key in enumerate(wrapper):
        if not isinstance(node, Mapping) or key not in node:
            wanted = "".join(f"[{k!r}]" for k in wrapper)
            where = "".join(f"[{k!r}]" for k in wrapper[:depth]) or "its top level"
            raise WrapperMismatchError(f"{name}: expected the state dict at {wanted}, but {where} is {_summary(node)}")
        node = node[key]
    return node


def _auto_unwrap(obj: object) -> object:
    while isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        key = next((k for k in _WRAPPER_KEYS if k in obj), None)
        if key is None:
            return obj  # check_state_dict names the non-tensor entries
        obj = obj[key]
    return obj


def read_state_dict(path: Path, wrapper: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """Read a torch checkpoint safely (see `read_checkpoint`) and return its state dict.

    wrapper: the keys leading to the state dict inside the file, exactly: () for a bare state dict,
    ("state_dict",) for {'state_dict': ..., 'epoch': ...}. None unwraps the usual `state_dict` / `model` /
    `model_state_dict` wrappers, as many levels as there are.
    """
    obj = read_checkpoint(path)
    node = _auto_unwrap(obj) if wrapper is None else _descend(obj, wrapper, path.name)
    return check_state_dict(node, path.name)


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
