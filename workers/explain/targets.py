"""Where each architecture is explained: its class-activation target layer, and how that layer's output becomes a
(N, C, h, w) map.

For CNNs the target is the last convolutional block before global pooling: its maps are the most semantic ones that
still have a spatial layout. For the CLIP ViT (Effort) it is the last encoder layer's input norm: its patch tokens,
laid out as the image's patch grid, are what the class token attends to in that layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class NoTarget(LookupError):
    """No class-activation target is known for this network: the member is reported, not explained."""


def patch_grid(tokens: torch.Tensor) -> torch.Tensor:
    """(N, 1 + h*w, C) ViT tokens -> (N, C, h, w): the class token dropped, the patches laid out as in the image."""
    n, count, channels = tokens.shape
    side = math.isqrt(count - 1)
    if side * side != count - 1:
        raise ValueError(f"{count - 1} patch tokens do not make a square grid")
    return tokens[:, 1:, :].reshape(n, side, side, channels).permute(0, 3, 1, 2)


@dataclass(frozen=True)
class CamTarget:
    method: str  # recorded with each heatmap
    layer: str  # dotted path from the network; an integer part indexes a Sequential/ModuleList (-1: the last)
    reshape: Callable[[torch.Tensor], torch.Tensor] | None = None

    def module(self, model: nn.Module) -> nn.Module:
        found = model
        for part in self.layer.split("."):
            if part.lstrip("-").isdigit():
                if not isinstance(found, (nn.Sequential, nn.ModuleList)):
                    raise NoTarget(f"{self.layer}: {type(found).__name__} cannot be indexed")
                found = found[int(part)]
            else:
                child = found._modules.get(part)
                if child is None:
                    raise NoTarget(f"{type(model).__name__} has no layer {self.layer}")
                found = child
        return found


_GRADCAM = "gradcam"
# Keyed by the network's class as module.qualname, so looking a target up never imports timm or transformers.
TARGETS: dict[str, CamTarget] = {
    "models.mesonet.Meso4": CamTarget(_GRADCAM, "features.-1"),
    "models.mesonet.MesoInception4": CamTarget(_GRADCAM, "features.-1"),
    # timm's legacy_xception (every Xception format): conv4 -> bn4 -> act4, then global pooling.
    "timm.models.xception.Xception": CamTarget(_GRADCAM, "act4"),
    # Every EfficientNet format, PyTorch- or TF-style: conv_head -> bn2 (BatchNorm with its activation).
    "timm.models.efficientnet.EfficientNet": CamTarget(_GRADCAM, "bn2"),
    "models.f3net.F3Net": CamTarget(_GRADCAM, "backbone.act4"),
    # Only the ResNet branch has a spatial map; the ViT branch's share of the decision is not shown.
    "models.hybrid.HybridResNetViT": CamTarget("gradcam_cnn_branch", "cnn.layer4"),
    "models.effort_clip.EffortClip": CamTarget("gradcam_vit", "backbone.encoder.layers.-1.layer_norm1", patch_grid),
}


def cam_target(model: nn.Module) -> CamTarget:
    kind = type(model)
    name = f"{kind.__module__}.{kind.__qualname__}"
    target = TARGETS.get(name)
    if target is None:
        raise NoTarget(f"no class-activation target layer is known for {name}")
    return target
