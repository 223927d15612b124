"""The one detector contract: uint8 RGB face crops in, P(FAKE) per crop out."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
from torch import nn

from core.crop_spec import SEED_PAD30, CropSpec
from core.preprocessing import Normalisation


class Detector(Protocol):
    name: str
    input_size: int
    crop: CropSpec  # how the crops it is fed are cut
    normalisation: Normalisation

    def predict(self, crops: np.ndarray) -> np.ndarray:
        """crops: uint8 (N, S, S, 3) RGB, S == input_size -> float64 (N,) P(FAKE) in [0, 1]."""
        ...


@dataclass(frozen=True)
class OutputSemantics:
    """How a network's logits become P(FAKE).

    sigmoid_real: one logit whose sigmoid is P(REAL) (MesoNet); sigmoid_fake: one logit, sigmoid is P(FAKE);
    softmax: C logits, P(FAKE) is the softmax at fake_index.
    """

    kind: Literal["sigmoid_real", "sigmoid_fake", "softmax"]
    fake_index: int = 1

    def p_fake(self, logits: torch.Tensor) -> torch.Tensor:
        if self.kind == "softmax":
            return logits.softmax(dim=1)[:, self.fake_index]
        if logits.shape[1] != 1:
            raise ValueError(f"{self.kind} expects one logit per image, got shape {tuple(logits.shape)}")
        logit = logits[:, 0]
        return torch.sigmoid(-logit if self.kind == "sigmoid_real" else logit)


class TorchDetector:
    """A torch network wrapped into the Detector contract: normalisation, batching, device, output semantics."""

    def __init__(
        self,
        name: str,
        model: nn.Module,
        input_size: int,
        normalisation: Normalisation,
        output: OutputSemantics,
        device: str = "cpu",
        batch_size: int = 32,
        *,
        crop: CropSpec = SEED_PAD30,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.name = name
        self.input_size = input_size
        self.normalisation = normalisation
        self.crop = crop
        self.output = output
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        if self.device.type == "cuda":
            # cuDNN's tensor-core convolutions are NHWC; the crops already arrive NHWC, so the permuted batch is
            # channels_last too. Not on CPU: measured no gain there (xception, efficientnet_b4, f3net, MesoNet).
            self.model = self.model.to(memory_format=torch.channels_last)
        self._mean = torch.tensor(normalisation.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(normalisation.std, device=self.device).view(1, 3, 1, 1)

    def _check(self, crops: np.ndarray) -> None:
        size = self.input_size
        if crops.dtype != np.uint8 or crops.ndim != 4 or crops.shape[1:] != (size, size, 3):
            raise ValueError(
                f"{self.name}: expected uint8 crops of shape (N, {size}, {size}, 3), got {crops.dtype} {crops.shape}"
            )

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        # Half precision only pays off (and is only well supported) on CUDA; CPU stays float32.
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    def predict(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        self._check(crops)
        scores: list[torch.Tensor] = []
        with torch.inference_mode():
            for start in range(0, len(crops), self.batch_size):
                batch = torch.from_numpy(np.ascontiguousarray(crops[start : start + self.batch_size]))
                x = batch.to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
                x = (x - self._mean) / self._std
                with self._autocast():
                    logits = self.model(x)
                scores.append(self.output.p_fake(logits.float()).double().cpu())
        if not scores:
            return np.empty(0, dtype=np.float64)
        result = torch.cat(scores).numpy()
        if not np.isfinite(result).all():
            raise RuntimeError(f"{self.name}: the network produced non-finite scores")
        return result
