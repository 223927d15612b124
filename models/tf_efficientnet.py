"""TensorFlow-ported EfficientNets of three public deepfake detectors, and adapters for their release key names.

All three are timm `tf_efficientnet_*` networks, i.e. BatchNorm eps `TF_BN_EPS` (1e-3, not torch's 1e-5) and
TensorFlow "SAME" padding (asymmetric, more on the bottom/right, for stride-2 convs). Module keys are timm's
(`conv_stem`, `bn1`, `blocks.<stage>.<index>.*`, `conv_head`, `bn2`) with the detector head as `classifier`.

- `build_deepfakebench_b4` (DeepfakeBench EfficientNetB4, input 256, mean = std = 0.5, 2 logits): an unpadded
  3x3/2 stem, and every other "same" conv padded with the fixed pads efficientnet_pytorch computed for 380 px.
- `build_sbi_b4` (SelfBlendedImages, input 380, x/255 only, 2 logits): fixed pads for 380 px as well, which equal
  timm's dynamic TF padding at the 380 px the model runs at.
- `build_dfdc_b7` (DFDC winner, input 380, ImageNet mean/std, 1 logit, P(fake) = sigmoid): timm's own dynamic
  TF padding, as the original timm encoder had.

The adapters take a release's state dict (the tensors, already out of its container) and return it under these
module keys; a key they cannot place raises ValueError naming it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from timm.layers.conv2d_same import Conv2dSame
from timm.models.efficientnet import _gen_efficientnet
from torch import Tensor, nn

TF_BN_EPS = 1e-3  # BatchNorm eps of every model built here (TensorFlow's default, kept by all three originals)

B4_CHANNEL_MULTIPLIER = 1.4
B4_DEPTH_MULTIPLIER = 1.8
B7_CHANNEL_MULTIPLIER = 2.0
B7_DEPTH_MULTIPLIER = 3.1
EFFICIENTNET_PYTORCH_B4_IMAGE_SIZE = 380  # efficientnet_pytorch's static pads for "efficientnet-b4" assume this size

Pads = tuple[int, int, int, int]  # (left, right, top, bottom), F.pad's order for the last two dimensions


class FixedPadConv2d(nn.Conv2d):
    """A conv that zero-pads its input by a fixed (left, right, top, bottom) before an unpadded convolution.

    A subclass of nn.Conv2d so that parameter names and shapes stay those of the conv it replaces.
    """

    def __init__(self, *args: Any, pads: Pads, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.padding != (0, 0) or any(p < 0 for p in pads):
            raise ValueError(f"FixedPadConv2d wants padding=0 and non-negative pads, got {self.padding}, {pads}")
        self.pads: Pads = pads

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(F.pad(x, self.pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, pads={self.pads}"  # type: ignore[no-untyped-call]  # torch leaves it bare


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) along one axis of length `size`: the odd pixel goes after."""
    total = max((math.ceil(size / stride) - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def freeze_same_padding(model: nn.Module, image_size: int) -> nn.Module:
    """Replace each dynamically "same"-padded conv (timm's Conv2dSame) by a FixedPadConv2d holding the pads that
    conv gets when the network input is `image_size` px: what efficientnet_pytorch bakes in at construction.

    Spatial size is followed the way efficientnet_pytorch does, ceil(size / stride) at every conv, whatever the
    conv's own padding, so a replaced (e.g. unpadded) stem still advances the chain as the original's did. It walks
    convs in registration order, which for timm EfficientNets is forward order. Returns `model`, changed in place.
    """
    height = width = image_size
    replacements: list[tuple[str, FixedPadConv2d]] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        (kh, kw), (sh, sw), (dh, dw) = module.kernel_size, module.stride, module.dilation
        if isinstance(module, Conv2dSame):
            top, bottom = tf_same_pads(height, kh, sh, dh)
            left, right = tf_same_pads(width, kw, sw, dw)
            fixed = FixedPadConv2d(
                module.in_channels,
                module.out_channels,
                module.kernel_size,
                stride=module.stride,
                padding=0,
                dilation=module.dilation,
                groups=module.groups,
                bias=module.bias is not None,
                device=module.weight.device,
                dtype=module.weight.dtype,
                pads=(left, right, top, bottom),
            )
            # share, not copy: whatever initialisation the model had survives the swap
            fixed.weight = module.weight
            fixed.bias = module.bias
            replacements.append((name, fixed))
        height, width = math.ceil(height / sh), math.ceil(width / sw)
    for name, fixed in replacements:  # after the walk: swapping while iterating named_modules is unsafe
        parent_name, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, fixed)
    return model


def _tf_efficientnet(variant: str, channel_multiplier: float, depth_multiplier: float, num_classes: int) -> nn.Module:
    # timm's tf_efficientnet_bN are exactly this call with their multipliers; calling the generator lets tiny test
    # variants share the layout. A unit test checks the defaults against timm.create_model's keys.
    model: nn.Module = _gen_efficientnet(  # type: ignore[no-untyped-call]  # timm leaves it unannotated
        variant,
        channel_multiplier=channel_multiplier,
        depth_multiplier=depth_multiplier,
        num_classes=num_classes,
        bn_eps=TF_BN_EPS,
        pad_type="same",
    )
    return model


def build_deepfakebench_b4(
    input_size: int,
    channel_multiplier: float = B4_CHANNEL_MULTIPLIER,
    depth_multiplier: float = B4_DEPTH_MULTIPLIER,
    pad_image_size: int = EFFICIENTNET_PYTORCH_B4_IMAGE_SIZE,
    num_classes: int = 2,
) -> nn.Module:
    """DeepfakeBench's EfficientNetB4: efficientnet_pytorch B4 whose stem DeepfakeBench swapped for a plain
    unpadded 3x3/2 conv, while every other conv keeps the static pads computed for 380 px although it runs at
    256 px. Both quirks change the logits, so both are reproduced; `pad_image_size` only exists for tiny variants.
    """
    del input_size  # the pads are fixed by pad_image_size; global average pooling takes any input size
    model = _tf_efficientnet("tf_efficientnet_b4", channel_multiplier, depth_multiplier, num_classes)
    stem = model.get_submodule("conv_stem")
    assert isinstance(stem, nn.Conv2d)
    model.conv_stem = nn.Conv2d(stem.in_channels, stem.out_channels, 3, stride=2, padding=0, bias=False)
    return freeze_same_padding(model, pad_image_size)


def build_sbi_b4(
    input_size: int,
    channel_multiplier: float = B4_CHANNEL_MULTIPLIER,
    depth_multiplier: float = B4_DEPTH_MULTIPLIER,
    pad_image_size: int = EFFICIENTNET_PYTORCH_B4_IMAGE_SIZE,
    num_classes: int = 2,
) -> nn.Module:
    """SelfBlendedImages' detector: efficientnet_pytorch B4 (static pads for 380 px) with a 2-way `_fc`.

    Pads are frozen for `pad_image_size` rather than left dynamic: identical at 380 px, and still what the
    original computes if the model is ever fed another size.
    """
    del input_size  # as in build_deepfakebench_b4
    model = _tf_efficientnet("tf_efficientnet_b4", channel_multiplier, depth_multiplier, num_classes)
    return freeze_same_padding(model, pad_image_size)


def build_dfdc_b7(
    input_size: int,
    channel_multiplier: float = B7_CHANNEL_MULTIPLIER,
    depth_multiplier: float = B7_DEPTH_MULTIPLIER,
    num_classes: int = 1,
) -> nn.Module:
    """The DFDC winner's DeepFakeClassifier: timm tf_efficientnet_b7_ns features, average pool, Linear(2560, 1).

    timm's own classifier slot holds that Linear: the original's 1000-way encoder classifier never runs.
    """
    del input_size  # timm pads dynamically, like the original encoder
    return _tf_efficientnet("tf_efficientnet_b7", channel_multiplier, depth_multiplier, num_classes)


def stage_depths_of(model: nn.Module) -> list[int]:
    """Blocks per stage of a timm EfficientNet, e.g. [2, 4, 4, 6, 6, 8, 2] for B4: what the adapters need to
    split efficientnet_pytorch's flat block list when it should not be inferred from the checkpoint."""
    return [len(list(stage.children())) for stage in model.get_submodule("blocks").children()]


# ---- key adapters ------------------------------------------------------------------------------------------------

_CONV = frozenset({"weight"})
_CONV_BIAS = frozenset({"weight", "bias"})
_BN = frozenset({"weight", "bias", "running_mean", "running_var", "num_batches_tracked"})

# efficientnet_pytorch block part -> (timm name, allowed leaves), for inverted-residual blocks (with `_expand_conv`)
# and for depthwise-separable ones (no expansion: timm numbers their BNs and pointwise conv differently)
_IR_PARTS = {
    "_expand_conv": ("conv_pw", _CONV),
    "_bn0": ("bn1", _BN),
    "_depthwise_conv": ("conv_dw", _CONV),
    "_bn1": ("bn2", _BN),
    "_se_reduce": ("se.conv_reduce", _CONV_BIAS),
    "_se_expand": ("se.conv_expand", _CONV_BIAS),
    "_project_conv": ("conv_pwl", _CONV),
    "_bn2": ("bn3", _BN),
}
_DS_PARTS = {
    "_depthwise_conv": ("conv_dw", _CONV),
    "_bn1": ("bn1", _BN),
    "_se_reduce": ("se.conv_reduce", _CONV_BIAS),
    "_se_expand": ("se.conv_expand", _CONV_BIAS),
    "_project_conv": ("conv_pw", _CONV),
    "_bn2": ("bn2", _BN),
}
_TOP_PARTS = {
    "_conv_stem": ("conv_stem", _CONV),
    "_bn0": ("bn1", _BN),
    "_conv_head": ("conv_head", _CONV),
    "_bn1": ("bn2", _BN),
}
_BLOCK_KEY = re.compile(r"_blocks\.(\d+)\.(\w+)\.(\w+)")
_TOP_KEY = re.compile(r"(\w+)\.(\w+)")


def _infer_stage_depths(state: Mapping[str, Tensor], n_blocks: int) -> list[int]:
    """Split efficientnet_pytorch's flat block list into stages from the tensor shapes alone.

    Blocks after the first of a stage repeat its kernel and block type and keep their channel count; the first
    block changes the kernel, the block type or the width. In EfficientNet B0-B7, at any width multiplier, every
    stage differs from the one before in kernel or type, except 112 -> 192 channels (B0 terms), which always
    widens, so this finds every boundary. Pass stage_depths explicitly for anything else.
    """
    depths: list[int] = []
    previous: tuple[int, bool] | None = None  # (kernel, expands) of the block before
    for n in range(n_blocks):
        expand = state.get(f"_blocks.{n}._expand_conv.weight")
        depthwise = state[f"_blocks.{n}._depthwise_conv.weight"]
        in_channels = int(expand.shape[1]) if expand is not None else int(depthwise.shape[0])
        out_channels = int(state[f"_blocks.{n}._project_conv.weight"].shape[0])
        signature = (int(depthwise.shape[-1]), expand is not None)
        if signature != previous or in_channels != out_channels:
            depths.append(0)
        depths[-1] += 1
        previous = signature
    return depths


def _adapt_efficientnet_pytorch(
    state: Mapping[str, Tensor],
    prefix: str,
    heads: Mapping[str, str],
    stage_depths: Sequence[int] | None,
    release: str,
) -> dict[str, Tensor]:
    """Keys `prefix` + efficientnet_pytorch name -> timm EfficientNet keys; `heads` maps the full release names of
    head Linears (e.g. "net._fc") to their timm name. Any other key raises ValueError naming it."""
    inner = {key.removeprefix(prefix): tensor for key, tensor in state.items() if key.startswith(prefix)}
    block_ids = {int(m.group(1)) for m in map(_BLOCK_KEY.fullmatch, inner) if m}
    n_blocks = len(block_ids)
    if block_ids != set(range(n_blocks)):
        raise ValueError(f"{release}: blocks are not numbered 0..{n_blocks - 1}: {sorted(block_ids)}")
    for n in range(n_blocks):
        for part in ("_depthwise_conv", "_project_conv"):
            if f"_blocks.{n}.{part}.weight" not in inner:
                raise ValueError(f"{release}: no key {prefix}_blocks.{n}.{part}.weight, cannot place block {n}")
    if stage_depths is None:
        stage_depths = _infer_stage_depths(inner, n_blocks)
    elif sum(stage_depths) != n_blocks or min(stage_depths, default=1) < 1:
        raise ValueError(f"{release}: stage_depths {list(stage_depths)} do not fit the checkpoint's {n_blocks} blocks")
    location = [(stage, index) for stage, depth in enumerate(stage_depths) for index in range(depth)]
    expands = [f"_blocks.{n}._expand_conv.weight" in inner for n in range(n_blocks)]

    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        target: str | None = None
        module, _, leaf = key.rpartition(".")
        if module in heads:
            target = f"{heads[module]}.{leaf}" if leaf in _CONV_BIAS else None
        elif key.startswith(prefix):
            name = key.removeprefix(prefix)
            block, top = _BLOCK_KEY.fullmatch(name), _TOP_KEY.fullmatch(name)
            if block:
                n, part = int(block.group(1)), block.group(2)
                timm_name, leaves = (_IR_PARTS if expands[n] else _DS_PARTS).get(part, ("", frozenset()))
                if leaf in leaves:
                    stage, index = location[n]
                    target = f"blocks.{stage}.{index}.{timm_name}.{leaf}"
            elif top and top.group(1) in _TOP_PARTS:
                timm_name, leaves = _TOP_PARTS[top.group(1)]
                target = f"{timm_name}.{leaf}" if leaf in leaves else None
        if target is None:
            raise ValueError(f"unexpected {release} key {key!r}")
        out[target] = tensor
    return out


def adapt_deepfakebench_b4(state: Mapping[str, Tensor], stage_depths: Sequence[int] | None = None) -> dict[str, Tensor]:
    """DeepfakeBench EfficientNetB4 detector state dict (`backbone.efficientnet.*`, `backbone.last_layer.*`) ->
    build_deepfakebench_b4 keys. `stage_depths` (see stage_depths_of) defaults to inferring them from shapes."""
    heads = {"backbone.last_layer": "classifier"}
    return _adapt_efficientnet_pytorch(state, "backbone.efficientnet.", heads, stage_depths, "DeepfakeBench B4")


def adapt_sbi_b4(state: Mapping[str, Tensor], stage_depths: Sequence[int] | None = None) -> dict[str, Tensor]:
    """SelfBlendedImages detector state dict (the `['model']` entry: `net.*`, efficientnet_pytorch names with the
    2-way `net._fc`) -> build_sbi_b4 keys. `stage_depths` as for adapt_deepfakebench_b4."""
    return _adapt_efficientnet_pytorch(state, "net.", {"net._fc": "classifier"}, stage_depths, "SelfBlendedImages")


_TIMM_EFFICIENTNET_KEY = re.compile(r"(conv_stem|bn1|conv_head|bn2|blocks\.\d+\.\d+)\..+")


def adapt_dfdc_b7(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """DFDC DeepFakeClassifier state dict (`state_dict` entry: `module.encoder.*`, `module.fc.*`) ->
    build_dfdc_b7 keys. The encoder's own 1000-way `classifier` is dropped: the original never runs it.

    A leading `module.` (left by DataParallel, present in every released file) is optional.
    """
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        name = key.removeprefix("module.")
        if name.startswith("encoder.classifier."):
            continue
        if name.startswith("encoder.") and _TIMM_EFFICIENTNET_KEY.fullmatch(name.removeprefix("encoder.")):
            out[name.removeprefix("encoder.")] = tensor
        elif name in ("fc.weight", "fc.bias"):
            out[f"classifier.{name.removeprefix('fc.')}"] = tensor
        else:
            raise ValueError(f"unexpected DFDC DeepFakeClassifier key {key!r}")
    return out


__all__ = [
    "B4_CHANNEL_MULTIPLIER",
    "B4_DEPTH_MULTIPLIER",
    "B7_CHANNEL_MULTIPLIER",
    "B7_DEPTH_MULTIPLIER",
    "EFFICIENTNET_PYTORCH_B4_IMAGE_SIZE",
    "TF_BN_EPS",
    "FixedPadConv2d",
    "adapt_deepfakebench_b4",
    "adapt_dfdc_b7",
    "adapt_sbi_b4",
    "build_deepfakebench_b4",
    "build_dfdc_b7",
    "build_sbi_b4",
    "freeze_same_padding",
    "stage_depths_of",
    "tf_same_pads",
]
