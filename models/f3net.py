"""F3Net as the seed deployed it: Xception over 12 channels (RGB, per-channel Sobel x/y, high-pass).

The filters are fixed, non-persistent buffers, so checkpoints hold only Xception's keys (conv1 takes 12
channels). Filters run on the ImageNet-normalised RGB the detector feeds in; channel order is
RGB, Sobel-x RGB, Sobel-y RGB, high-pass RGB.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.xception import Xception

from models.xception import MIDDLE_FLOW, drop_middle_blocks

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_HIGH_PASS = torch.tensor([[-1.0, -1.0, -1.0], [-1.0, 8.0, -1.0], [-1.0, -1.0, -1.0]]) / 8.0


def _depthwise(kernel: torch.Tensor) -> torch.Tensor:
    return kernel.expand(3, 1, 3, 3).clone()  # the same 3x3 filter on each of R, G, B


class F3Net(Xception):
    sobel_x: torch.Tensor
    sobel_y: torch.Tensor
    high_pass: torch.Tensor

    def __init__(self, input_size: int = 224, middle_blocks: int = len(MIDDLE_FLOW)) -> None:
        del input_size  # global average pooling: the network takes any input size
        super().__init__(num_classes=2, in_chans=12)
        drop_middle_blocks(self, middle_blocks)
        self.register_buffer("sobel_x", _depthwise(_SOBEL_X), persistent=False)
        self.register_buffer("sobel_y", _depthwise(_SOBEL_X.T), persistent=False)
        self.register_buffer("high_pass", _depthwise(_HIGH_PASS), persistent=False)

    def noise_features(self, rgb: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, 9, H, W): Sobel-x, Sobel-y and high-pass responses per colour channel."""
        padded = F.pad(rgb, (1, 1, 1, 1), mode="replicate")  # zero padding would invent edges at the border
        kernels = (self.sobel_x, self.sobel_y, self.high_pass)
        return torch.cat([F.conv2d(padded, k.to(rgb.dtype), groups=3) for k in kernels], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stacked = torch.cat([x, self.noise_features(x)], dim=1)
        logits: torch.Tensor = super().forward(stacked)  # type: ignore[no-untyped-call]  # timm is unannotated
        return logits
