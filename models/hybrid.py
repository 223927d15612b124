"""Hybrid detector: ResNet18 and ViT-B/16 features concatenated (512 + 768) -> MLP -> one logit, P(FAKE).

The seed reports 97,894,209 parameters. ResNet18 and ViT-B/16 without heads are 11,176,512 and 85,798,656,
leaving 919,041 for the head: exactly Linear(1280, 512) + Linear(512, 512) + Linear(512, 1). The seed's key
names for that head are not known; a checkpoint with other names fails strict loading and names the keys.
"""

from __future__ import annotations

import timm
import torch
from torch import nn

RESNET18_FEATURES = 512  # layer4's width; `resnet_layers` changes depth only


class HybridResNetViT(nn.Module):
    def __init__(
        self,
        input_size: int = 224,
        resnet_layers: tuple[int, int, int, int] | list[int] = (2, 2, 2, 2),
        vit_embed_dim: int = 768,
        vit_depth: int = 12,
        vit_num_heads: int = 12,
        head_hidden: int = 512,
    ) -> None:
        super().__init__()
        self.cnn = timm.create_model("resnet18", pretrained=False, num_classes=0, layers=tuple(resnet_layers))
        self.vit = timm.create_model(
            "vit_base_patch16_224",
            pretrained=False,
            num_classes=0,
            img_size=input_size,
            embed_dim=vit_embed_dim,
            depth=vit_depth,
            num_heads=vit_num_heads,
        )
        self.head = nn.Sequential(
            nn.Linear(RESNET18_FEATURES + vit_embed_dim, head_hidden),
            nn.ReLU(),
            nn.Linear(head_hidden, head_hidden),
            nn.ReLU(),
            nn.Linear(head_hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit: torch.Tensor = self.head(torch.cat([self.cnn(x), self.vit(x)], dim=1))
        return logit
