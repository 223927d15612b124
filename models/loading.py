"""Build a member's network from its format and load a checkpoint into it, proving it is the right network.

Three checks stand between a file and a running member: the release's keys must not be another format's
(a DeepfakeBench F3Net file is not an Xception), every key must fit after the format's adapter (strict), and the
built network must have the identity its format records (BatchNorm epsilon, padding style), since a look-alike
with the same shapes loads strictly and computes something else. A pack may also record the logits a member gave
on a fixed probe input when it was imported; loading compares them again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.manifest import ProbeCheck
from core.preprocessing import Normalisation
from models.checkpoint import CheckpointError, load_strict, read_state_dict, strip_prefixes
from models.formats import ArchIdentity, CheckpointFormat, formats_matching, resolve

PROBE_IMAGES = 2
DEFAULT_PROBE_TOLERANCE = 1e-3  # CPU float32 repeats to ~1e-6; GPUs (no TF32 here) to ~1e-4


class WrongFormatError(CheckpointError):
    """The file is a checkpoint of another release than the member's format."""


class IdentityError(CheckpointError):
    """The built network is not the variant the format requires, or it no longer computes what it did."""


def build(fmt: CheckpointFormat, input_size: int | None, options: Mapping[str, Any]) -> nn.Module:
    size = input_size or fmt.input_size
    if fmt.fixed_size and size != fmt.input_size:
        raise ValueError(f"format {fmt.name} runs only at {fmt.input_size} px, the manifest asks for {size}")
    return fmt.build_model(size, options)


def load_weights(fmt: CheckpointFormat, model: nn.Module, path: Path) -> None:
    """Read `path` the way `fmt`'s release is stored, adapt its keys and load them strictly into `model`."""
    if fmt.load_weights:
        resolve(fmt.load_weights)(model, path)
        return
    try:
        raw = read_state_dict(path, wrapper=fmt.wrapper)
    except CheckpointError as original:
        if fmt.wrapper is None:
            raise
        # Another release's container? Say which, if its keys tell.
        try:
            unwrapped = read_state_dict(path, wrapper=None)
        except CheckpointError:
            raise original from None
        _refuse_foreign(fmt, unwrapped, path)
        raise
    _refuse_foreign(fmt, raw, path)
    state = fmt.adapt(strip_prefixes(raw, model.state_dict().keys()) if fmt.wrapper is None else raw)
    load_strict(model, state, source=f"{path.name} (format {fmt.name})")


def _refuse_foreign(fmt: CheckpointFormat, raw: Mapping[str, torch.Tensor], path: Path) -> None:
    keys = set(raw)
    # Formats that read the same keys into the same network (Verity's effort_clip and DeepfakeBench's Effort
    # differ only in crop) are not foreign to each other.
    same = (fmt.build, fmt.adapter, fmt.transform)
    others = [o.name for o in formats_matching(keys) if (o.build, o.adapter, o.transform) != same]
    if others and not fmt.matches(keys):
        raise WrongFormatError(
            f"{path.name} is a {' / '.join(others)} checkpoint (its keys are that release's), not {fmt.name}: "
            f"set format: {others[0]} for this member"
        )


def identity_problems(model: nn.Module, identity: ArchIdentity) -> list[str]:
    """How the built network differs from the variant its format names (empty: it is that variant)."""
    problems: list[str] = []
    if identity.bn_eps is not None:
        wrong = [
            f"{name} (eps {m.eps:g})"
            for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not np.isclose(m.eps, identity.bn_eps)
        ]
        if wrong:
            problems.append(f"{len(wrong)} BatchNorm layers do not have eps {identity.bn_eps:g}, e.g. {wrong[0]}")
    if identity.padding is not None:
        strided = [(n, m) for n, m in model.named_modules() if _is_strided_spatial_conv(m)]
        same = [n for n, m in strided if _pads_tf_same(m)]
        symmetric = [n for n, m in strided if not _pads_tf_same(m) and any(p > 0 for p in _conv_padding(m))]
        if identity.padding == "tf_same" and symmetric:
            problems.append(f"strided convolutions pad symmetrically (PyTorch style), not TF 'same': {symmetric[0]}")
        if identity.padding == "symmetric" and same:
            problems.append(f"strided convolutions pad TF 'same' (asymmetric), not PyTorch style: {same[0]}")
    return problems


def _is_strided_spatial_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d) and max(module.stride) > 1 and max(module.kernel_size) > 1


def _pads_tf_same(module: nn.Module) -> bool:
    # timm's dynamic Conv2dSame and the fixed-pad convolutions of the static-padding EfficientNets both pad
    # asymmetrically in forward(), with the conv's own padding 0. Imported here: a MesoNet pack never needs timm.
    from timm.layers.conv2d_same import Conv2dSame

    from models.tf_efficientnet import FixedPadConv2d

    return isinstance(module, (Conv2dSame, FixedPadConv2d))


def _conv_padding(module: nn.Module) -> tuple[int, ...]:
    padding = module.padding
    return tuple(padding) if isinstance(padding, tuple) else (0, 0)


def check_identity(fmt: CheckpointFormat, model: nn.Module) -> None:
    problems = identity_problems(model, fmt.identity)
    if problems:
        raise IdentityError(f"the network built for {fmt.name} is not the variant its release needs: {problems}")


def probe_input(size: int) -> np.ndarray:
    """PROBE_IMAGES fixed uint8 RGB images of size x size: smooth gradients plus a sharp integer pattern, from a
    formula (no random generator whose stream a library update could change)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    images = []
    for k in range(PROBE_IMAGES):
        channels = [
            96 + 80 * np.sin(np.pi * (x * (1 + k) + y * (c + 1)) + c) + ((np.arange(size)[None, :] * (7 + c + k)) % 23)
            for c in range(3)
        ]
        images.append(np.stack(channels, axis=-1))
    probe: np.ndarray = np.clip(np.rint(np.stack(images)), 0, 255).astype(np.uint8)
    return probe


@contextlib.contextmanager
def _exact_math(device: torch.device) -> Iterator[None]:
    # TF32 convolutions would move the logits by ~1e-3 on an Ampere+ GPU; the probe compares float32 results.
    if device.type == "cuda":
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    else:
        yield


def probe_logits(model: nn.Module, normalisation: Normalisation, size: int) -> np.ndarray:
    """The network's float32 logits on the probe images (model on its own device, in eval mode)."""
    param = next(model.parameters())
    images = torch.from_numpy(probe_input(size)).to(param.device).permute(0, 3, 1, 2).float().div(255.0)
    mean = torch.tensor(normalisation.mean, device=param.device).view(1, 3, 1, 1)
    std = torch.tensor(normalisation.std, device=param.device).view(1, 3, 1, 1)
    with torch.inference_mode(), _exact_math(param.device):
        logits = model.eval()((images - mean) / std)
    result: np.ndarray = logits.float().cpu().numpy().astype(np.float64)
    return result


def verify_probe(name: str, check: ProbeCheck, logits: np.ndarray) -> None:
    recorded = np.asarray(check.logits, dtype=np.float64)
    if recorded.shape != logits.shape:
        raise IdentityError(f"{name}: the pack recorded probe logits of shape {recorded.shape}, got {logits.shape}")
    diff = float(np.abs(recorded - logits).max())
    if diff > check.tolerance:
        raise IdentityError(
            f"{name}: on the fixed probe input the network now gives logits {diff:.3g} away from those recorded when "
            f"it was imported (tolerance {check.tolerance:g}): it is not the network that was imported "
            "(a changed library, a different variant or another file); re-import it to accept the change"
        )
