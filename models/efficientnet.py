"""EfficientNet-B4 (timm `efficientnet_b4`) with a two-class head, class 1 = FAKE."""

from __future__ import annotations

from timm.models.efficientnet import _gen_efficientnet
from torch import nn

B4_CHANNEL_MULTIPLIER = 1.4
B4_DEPTH_MULTIPLIER = 1.8


def build_efficientnet_b4(
    input_size: int,
    channel_multiplier: float = B4_CHANNEL_MULTIPLIER,
    depth_multiplier: float = B4_DEPTH_MULTIPLIER,
) -> nn.Module:
    """timm's efficientnet_b4 is exactly _gen_efficientnet with B4's multipliers; calling the generator is the
    only way timm offers to build the same layout narrower and shallower for tiny test packs. A unit test
    checks that the defaults give timm.create_model("efficientnet_b4")'s keys and parameter count.
    """
    del input_size  # global average pooling: the network takes any input size
    model: nn.Module = _gen_efficientnet(  # type: ignore[no-untyped-call]  # timm leaves it unannotated
        "efficientnet_b4",
        channel_multiplier=channel_multiplier,
        depth_multiplier=depth_multiplier,
        num_classes=2,
    )
    return model
