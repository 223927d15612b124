"""F3Net as DeepfakeBench publishes it (Qian et al., ECCV 2020, FAD branch only).

A frequency head splits the normalised RGB crop into four DCT bands (low, middle, high, all), each band mask
being a fixed 0/1 pattern plus a learnable 2*sigmoid(w) - 1 correction, and turns each band back into pixels.
The 12 band channels (no raw RGB) feed an Xception whose first conv takes 12 channels. The DCT matrices are as
large as the input, so the network only runs at the size it was built for (256 px in the release).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch
from timm.models.xception import Xception
from torch import nn

from models.checkpoint import CheckpointError
from models.xception import MIDDLE_FLOW, drop_middle_blocks

# Upper and lower limits of each band on the anti-diagonal index i + j, as fractions of the size:
# DeepfakeBench uses size // 2.82 (about 1/16 of the spectrum's area), size // 2 and everything.
_LOW_END_DIVISOR = 2.82


def dct_matrix(size: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: row i is the i-th cosine basis vector."""
    i = np.arange(size, dtype=np.float64)[:, None]
    j = np.arange(size, dtype=np.float64)[None, :]
    scale = np.where(i == 0, math.sqrt(1.0 / size), math.sqrt(2.0 / size))
    return scale * np.cos((j + 0.5) * np.pi * i / size)


def band_limits(size: int) -> list[tuple[float, float]]:
    low_end = float(size // _LOW_END_DIVISOR)
    return [(0.0, low_end), (low_end, float(size // 2)), (float(size // 2), size * 2.0), (0.0, size * 2.0)]


def band_mask(size: int, start: float, end: float) -> np.ndarray:
    """1 where start <= i + j <= end, else 0."""
    diagonal = np.add.outer(np.arange(size), np.arange(size))
    return ((diagonal >= start) & (diagonal <= end)).astype(np.float32)


class FrequencyBand(nn.Module):
    base: torch.Tensor

    def __init__(self, size: int, start: float, end: float) -> None:
        super().__init__()
        self.register_buffer("base", torch.from_numpy(band_mask(size, start, end)))
        self.learnable = nn.Parameter(torch.zeros(size, size))

    def forward(self, spectrum: torch.Tensor) -> torch.Tensor:
        mask = self.base + (2.0 * torch.sigmoid(self.learnable) - 1.0)
        return spectrum * mask


class FrequencyHead(nn.Module):
    """(N, 3, S, S) -> (N, 12, S, S): each of four DCT bands, back in pixel space."""

    dct: torch.Tensor
    dct_t: torch.Tensor

    def __init__(self, size: int) -> None:
        super().__init__()
        dct = torch.from_numpy(dct_matrix(size)).float()
        self.register_buffer("dct", dct)
        self.register_buffer("dct_t", dct.T.contiguous())
        self.bands = nn.ModuleList(FrequencyBand(size, start, end) for start, end in band_limits(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectrum = self.dct @ x @ self.dct_t
        return torch.cat([self.dct_t @ band(spectrum) @ self.dct for band in self.bands], dim=1)


class F3Net(nn.Module):
    def __init__(self, input_size: int = 256, middle_blocks: int = len(MIDDLE_FLOW), num_classes: int = 2) -> None:
        super().__init__()
        self.input_size = input_size
        self.frequency = FrequencyHead(input_size)
        self.backbone = Xception(num_classes=num_classes, in_chans=12)
        drop_middle_blocks(self.backbone, middle_blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.input_size, self.input_size):
            raise ValueError(f"F3Net's DCT is {self.input_size} px square, got input {tuple(x.shape[-2:])}")
        logits: torch.Tensor = self.backbone(self.frequency(x))
        return logits


def check_frequency_constants(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Refuse a checkpoint whose fixed DCT matrices or band masks are not the published ones.

    They are not learned, so a real F3Net checkpoint holds exactly these values; anything else is another network
    (or another size) that merely has the same key names.
    """
    dct = state.get("frequency.dct")
    if dct is None or dct.ndim != 2 or dct.shape[0] != dct.shape[1]:
        raise CheckpointError("not an F3Net checkpoint: no square frequency.dct (FAD_head._DCT_all) matrix")
    size = dct.shape[0]
    expected = {"frequency.dct": dct_matrix(size), "frequency.dct_t": dct_matrix(size).T}
    for i, (start, end) in enumerate(band_limits(size)):
        expected[f"frequency.bands.{i}.base"] = band_mask(size, start, end)
    for key, value in expected.items():
        stored = state.get(key)
        if stored is None or tuple(stored.shape) != value.shape:
            raise CheckpointError(f"not an F3Net checkpoint: {key} missing or not {value.shape}")
        if not np.allclose(stored.double().numpy(), value, atol=1e-6):
            raise CheckpointError(f"{key} differs from F3Net's fixed {size}-point DCT band values")
    return dict(state)
