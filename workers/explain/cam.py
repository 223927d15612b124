"""Class-activation maps of one member on its own face crops, with the ``grad-cam`` package (pytorch_grad_cam).

The target is the member's evidence for FAKE: the log-odds of P(FAKE) as its output semantics define it (one
logit, its negation for a P(REAL) network, or the fake logit against the others' log-sum-exp), so every member is
explained towards the same class however its head is wired.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from pytorch_grad_cam import GradCAM
from torch import nn

from models.detector import OutputSemantics, TorchDetector
from workers.explain.targets import cam_target


class FakeLogOdds:
    """The Grad-CAM target for one image's logits (a 1-D tensor): log(P(FAKE) / (1 - P(FAKE)))."""

    def __init__(self, output: OutputSemantics) -> None:
        self.output = output

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        if self.output.kind == "sigmoid_real":
            return -logits[0]
        if self.output.kind == "sigmoid_fake":
            return logits[0]
        fake = self.output.fake_index
        others = torch.cat([logits[:fake], logits[fake + 1 :]])
        return logits[fake] - torch.logsumexp(others, dim=0)


@dataclass(frozen=True)
class Cams:
    method: str
    maps: np.ndarray  # float32 (N, S, S) in [0, 1], one per crop at the crop's own size


@contextmanager
def _frozen(model: nn.Module) -> Iterator[None]:
    """Gradients flow to the activations through an input that requires them, never into the weights: no weight
    .grad buffers are filled (a ViT-L's would be as large as the model)."""
    wanted = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in wanted:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, before in wanted:
            p.requires_grad_(before)


def member_cams(detector: TorchDetector, crops: np.ndarray) -> Cams:
    """crops: uint8 (N, S, S, 3) RGB as the member was fed them -> its class-activation map of each."""
    target = cam_target(detector.model)
    layer = target.module(detector.model)
    batch = torch.from_numpy(np.ascontiguousarray(crops)).to(detector.device)
    x = batch.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(detector.normalisation.mean, device=detector.device).view(1, 3, 1, 1)
    std = torch.tensor(detector.normalisation.std, device=detector.device).view(1, 3, 1, 1)
    x = ((x - mean) / std).requires_grad_(True)
    targets = [FakeLogOdds(detector.output) for _ in range(len(crops))]
    with _frozen(detector.model), torch.enable_grad(), GradCAM(detector.model, [layer], target.reshape) as cam:
        maps = cam(input_tensor=x, targets=targets)
    return Cams(target.method, np.asarray(maps, dtype=np.float32))
