"""Xception (timm `legacy_xception`) with a two-class head, class 1 = FAKE."""

from __future__ import annotations

import timm
from torch import nn

MIDDLE_FLOW = tuple(range(4, 12))  # block4 .. block11: the eight 728-channel middle-flow blocks


def drop_middle_blocks(model: nn.Module, keep: int) -> None:
    """Keep the first `keep` middle-flow blocks (tiny test configs); the rest become identities.

    The middle flow maps 728 -> 728 channels at stride 1, so dropping blocks keeps every other shape and key.
    """
    if not 0 <= keep <= len(MIDDLE_FLOW):
        raise ValueError(f"middle_blocks must be between 0 and {len(MIDDLE_FLOW)}, got {keep}")
    for index in MIDDLE_FLOW[keep:]:
        setattr(model, f"block{index}", nn.Identity())


def build_xception(input_size: int, middle_blocks: int = len(MIDDLE_FLOW)) -> nn.Module:
    del input_size  # global average pooling: the network takes any input size
    model = timm.create_model("legacy_xception", pretrained=False, num_classes=2)
    drop_middle_blocks(model, middle_blocks)
    return model
