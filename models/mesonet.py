"""MesoNet (Afchar et al., WIFS 2018) in PyTorch, loadable from the published Keras 2.1.5 HDF5 weights.

Both networks return one logit per image whose sigmoid is P(REAL): the Keras classes were the alphabetically
sorted folders df=0, real=1. Turning that into P(FAKE) is the detector's job, driven by the registry.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import torch
from torch import nn

from models.checkpoint import CheckpointError, load_checkpoint, load_strict

KERAS_BN_EPS = 1e-3  # Keras' BatchNormalization default; PyTorch's 1e-5 would shift every activation.


def _conv(in_ch: int, out_ch: int, kernel: int, dilation: int = 1) -> nn.Conv2d:
    # Odd kernels with padding = dilation * (k // 2) reproduce Keras' 'same' padding exactly at stride 1.
    return nn.Conv2d(in_ch, out_ch, kernel, padding=dilation * (kernel // 2), dilation=dilation)


class _ConvBlock(nn.Sequential):
    """Keras' Conv2D(activation='relu') -> BatchNormalization -> MaxPooling2D."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, pool: int) -> None:
        super().__init__(
            _conv(in_ch, out_ch, kernel),
            nn.ReLU(),
            nn.BatchNorm2d(out_ch, eps=KERAS_BN_EPS),
            nn.MaxPool2d(pool),
        )


class _Inception(nn.Module):
    """MesoInception's block: 1x1 | 1x1->3x3 | 1x1->3x3 dil 2 | 1x1->3x3 dil 3, concatenated, BN, pool 2.

    Modules are registered in the order Keras created its layers (conv2d_1 .. conv2d_7), which is what the
    HDF5 reader relies on to pair layers.
    """

    def __init__(self, in_ch: int, a: int, b: int, c: int, d: int) -> None:
        super().__init__()
        self.branch1 = nn.Sequential(_conv(in_ch, a, 1), nn.ReLU())
        self.branch2 = nn.Sequential(_conv(in_ch, b, 1), nn.ReLU(), _conv(b, b, 3), nn.ReLU())
        self.branch3 = nn.Sequential(_conv(in_ch, c, 1), nn.ReLU(), _conv(c, c, 3, dilation=2), nn.ReLU())
        self.branch4 = nn.Sequential(_conv(in_ch, d, 1), nn.ReLU(), _conv(d, d, 3, dilation=3), nn.ReLU())
        self.bn = nn.BatchNorm2d(a + b + c + d, eps=KERAS_BN_EPS)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], dim=1)
        out: torch.Tensor = self.pool(self.bn(y))
        return out


class _MesoHead(nn.Module):
    """Flatten (channels-last, as Keras) -> Dropout -> Dense 16 -> LeakyReLU(0.1) -> Dropout -> Dense 1."""

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.drop1 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(in_features, 16)
        self.act = nn.LeakyReLU(0.1)
        self.drop2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1).flatten(1)  # Keras flattens NHWC; the Dense kernel expects that order.
        logit: torch.Tensor = self.fc2(self.drop2(self.act(self.fc1(self.drop1(x)))))
        return logit


def _head_features(input_size: int) -> int:
    if input_size % 32:
        raise ValueError(f"MesoNet input_size must be a multiple of 32 (total pooling), got {input_size}")
    return 16 * (input_size // 32) ** 2


class Meso4(nn.Module):
    """Meso4: four conv blocks (8@3x3, 8@5x5, 16@5x5, 16@5x5; pools 2, 2, 2, 4) and a small dense head."""

    def __init__(self, input_size: int = 256) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _ConvBlock(3, 8, 3, 2),
            _ConvBlock(8, 8, 5, 2),
            _ConvBlock(8, 16, 5, 2),
            _ConvBlock(16, 16, 5, 4),
        )
        self.head = _MesoHead(_head_features(input_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit: torch.Tensor = self.head(self.features(x))
        return logit


class MesoInception4(nn.Module):
    """MesoInception4: Inception blocks (1, 4, 4, 2) and (2, 4, 4, 2), then Meso4's last two blocks."""

    def __init__(self, input_size: int = 256) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _Inception(3, 1, 4, 4, 2),
            _Inception(11, 2, 4, 4, 2),
            _ConvBlock(12, 16, 5, 2),
            _ConvBlock(16, 16, 5, 4),
        )
        self.head = _MesoHead(_head_features(input_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit: torch.Tensor = self.head(self.features(x))
        return logit


_KERAS_KINDS: dict[str, type[nn.Module]] = {
    "conv2d": nn.Conv2d,
    "batch_normalization": nn.BatchNorm2d,
    "dense": nn.Linear,
}


def _keras_layers(h5: h5py.Group) -> dict[str, list[tuple[str, dict[str, np.ndarray]]]]:
    """Weighted Keras layers grouped by kind, each kind in creation order (the layer's numeric suffix)."""
    root = h5.get("model_weights", h5)  # full-model saves nest the weights one level down
    grouped: dict[str, list[tuple[int, str, dict[str, np.ndarray]]]] = {}
    for raw_name in root.attrs["layer_names"]:
        layer = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
        group = root[layer]
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in group.attrs["weight_names"]]
        if not names:
            continue
        match = re.fullmatch(r"(.+?)(?:_(\d+))?", layer)
        assert match is not None  # the pattern matches any non-empty name
        kind, index = match.group(1), int(match.group(2) or 0)
        if kind not in _KERAS_KINDS:
            raise CheckpointError(f"unsupported Keras layer with weights: {layer} ({names})")
        weights = {n.split("/")[-1].removesuffix(":0"): np.asarray(group[n]) for n in names}
        grouped.setdefault(kind, []).append((index, layer, weights))
    return {kind: [(name, w) for _, name, w in sorted(items)] for kind, items in grouped.items()}


def _convert(module: nn.Module, weights: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """One Keras layer's weights as this module's torch tensors; pop()s so leftovers show up as unused."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(module, nn.Conv2d):
        out["weight"] = torch.from_numpy(weights.pop("kernel").transpose(3, 2, 0, 1).copy())  # HWIO -> OIHW
        out["bias"] = torch.from_numpy(weights.pop("bias"))
    elif isinstance(module, nn.Linear):
        out["weight"] = torch.from_numpy(weights.pop("kernel").T.copy())  # Keras Dense kernel is (in, out)
        out["bias"] = torch.from_numpy(weights.pop("bias"))
    elif isinstance(module, nn.BatchNorm2d):
        out["weight"] = torch.from_numpy(weights.pop("gamma"))
        out["bias"] = torch.from_numpy(weights.pop("beta"))
        out["running_mean"] = torch.from_numpy(weights.pop("moving_mean"))
        out["running_var"] = torch.from_numpy(weights.pop("moving_variance"))
        out["num_batches_tracked"] = torch.tensor(0)  # PyTorch-only counter, unused in eval
    return out


def keras_state_dict(model: nn.Module, path: Path) -> dict[str, torch.Tensor]:
    """Map a Keras HDF5 weight file onto `model`'s parameter names, pairing layers of each kind in order.

    Raises CheckpointError naming the layers or weights that have no counterpart on either side.
    """
    with h5py.File(path, "r") as h5:
        layers = _keras_layers(h5)
    state: dict[str, torch.Tensor] = {}
    problems: list[str] = []
    for kind, torch_type in _KERAS_KINDS.items():
        modules = [(n, m) for n, m in model.named_modules() if type(m) is torch_type]
        keras = layers.get(kind, [])
        if len(modules) != len(keras):
            problems.append(
                f"{kind}: {len(keras)} Keras layers {[k for k, _ in keras]} "
                f"vs {len(modules)} torch modules {[n for n, _ in modules]}"
            )
            continue
        for (module_name, module), (layer, weights) in zip(modules, keras, strict=True):
            try:
                converted = _convert(module, weights)
            except KeyError as exc:
                problems.append(f"{layer}: missing Keras weight {exc}")
                continue
            if weights:
                problems.append(f"{layer}: unused Keras weights {sorted(weights)}")
            state.update({f"{module_name}.{k}": v for k, v in converted.items()})
    if problems:
        raise CheckpointError(f"{path.name} does not fit {type(model).__name__}: " + "; ".join(problems))
    return state


def load_mesonet_weights(model: nn.Module, path: Path) -> None:
    """Load the published Keras .h5 files, or a PyTorch checkpoint of the ported model, strictly."""
    if path.suffix.lower() in {".h5", ".hdf5"}:
        load_strict(model, keras_state_dict(model, path), source=path.name)
    else:
        load_checkpoint(model, path)
