"""TF-ported EfficientNets (DeepfakeBench B4, SelfBlendedImages B4, DFDC B7): fixed TF-same pads and key adapters.

Tiny variants only; the full-size logit vectors live in the interop test.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import timm
import torch
from timm.layers.conv2d_same import Conv2dSame
from timm.models.efficientnet import _gen_efficientnet
from torch import Tensor, nn

from models.tf_efficientnet import (
    TF_BN_EPS,
    FixedPadConv2d,
    adapt_deepfakebench_b4,
    adapt_dfdc_b7,
    adapt_sbi_b4,
    build_deepfakebench_b4,
    build_dfdc_b7,
    build_sbi_b4,
    freeze_same_padding,
    stage_depths_of,
    tf_same_pads,
)

Builder = Callable[..., nn.Module]
Adapter = Callable[..., dict[str, Tensor]]
CM, DM = 0.25, 1.0  # tiny: stages of 1, 2, 2, 3, 3, 4, 1 blocks, 8 to 80 channels wide


def timm_tf_b4(channel_multiplier: float = CM, depth_multiplier: float = DM) -> nn.Module:
    """timm's tf_efficientnet_b4 (dynamic TF-same padding, BN eps 1e-3) at a tiny width: the reference."""
    model: nn.Module = _gen_efficientnet(  # type: ignore[no-untyped-call]  # timm leaves it unannotated
        "tf_efficientnet_b4",
        channel_multiplier=channel_multiplier,
        depth_multiplier=depth_multiplier,
        num_classes=2,
        bn_eps=1e-3,
        pad_type="same",
    )
    return model


def randomise(model: nn.Module, calibrate_on: Tensor | None = None, seed: int = 0) -> nn.Module:
    """Non-trivial weights, so that a wrong pad or a swapped tensor shows in the output. Random BN statistics let
    the signal die within a few blocks (every input gives the same logits), so `calibrate_on` sets them from a
    batch instead: a cumulative-average pass in train mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if not tensor.is_floating_point():
                continue
            if name.endswith("running_var"):
                tensor.copy_(1 + 0.1 * torch.rand(tensor.shape, generator=g))
            elif tensor.ndim >= 2:
                tensor.copy_(torch.randn(tensor.shape, generator=g) * (1.0 / tensor[0].numel()) ** 0.5)
            else:
                tensor.copy_(0.1 * torch.randn(tensor.shape, generator=g) + (name.endswith("weight")))
        if calibrate_on is not None:
            for module in model.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.reset_running_stats()
                    module.momentum = None
            model.train()(calibrate_on)
    return model.eval()


def forward(model: nn.Module, x: Tensor) -> Tensor:
    with torch.inference_mode():
        out: Tensor = model(x)
    return out


# ---- padding -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [(380, 3, 2, (0, 1)), (190, 3, 2, (0, 1)), (95, 5, 2, (2, 2)), (24, 5, 2, (1, 2)), (127, 3, 2, (1, 1)),
     (63, 5, 1, (2, 2)), (10, 1, 1, (0, 0))],
)  # fmt: skip
def test_tf_same_pads(size: int, kernel: int, stride: int, pads: tuple[int, int]) -> None:
    assert tf_same_pads(size, kernel, stride) == pads


@pytest.mark.parametrize("size", [380, 129])  # even and odd sizes along the chain: 190, 95, 48, 24 / 65, 33, 17, 9
def test_fixed_pads_equal_dynamic_tf_same_at_their_own_size(size: int) -> None:
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    dynamic = randomise(timm_tf_b4(depth_multiplier=0.5), calibrate_on=x)
    assert any(isinstance(m, Conv2dSame) for m in dynamic.modules())
    fixed = build_sbi_b4(size, CM, 0.5, pad_image_size=size)
    fixed.load_state_dict(dynamic.state_dict(), strict=True)
    assert not any(isinstance(m, Conv2dSame) for m in fixed.modules())
    out = forward(fixed.eval(), x)
    assert (out[0] - out[1]).abs().max() > 1e-2  # the output depends on the input, so the pads are exercised
    assert torch.equal(out, forward(dynamic, x))
    # at another size the pads stay those of `size`, which is the point: the odd/even pattern of the chain differs
    other = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(2))
    assert (forward(fixed, other) - forward(dynamic, other)).abs().max() > 1e-3


def test_freeze_same_padding_shares_parameters_and_keeps_names() -> None:
    model = timm_tf_b4()
    before = dict(model.named_parameters())
    frozen = freeze_same_padding(model, 380)
    after = dict(frozen.named_parameters())
    assert before.keys() == after.keys()
    assert all(before[k] is after[k] for k in before)


def test_deepfakebench_b4_stem_and_pads_follow_the_380_chain() -> None:
    with torch.device("meta"):
        model = build_deepfakebench_b4(256)
    stem = model.get_submodule("conv_stem")
    assert type(stem) is nn.Conv2d and stem.padding == (0, 0) and stem.stride == (2, 2) and stem.bias is None
    assert not any(isinstance(m, Conv2dSame) for m in model.modules())
    strided = [m.pads for m in model.modules() if isinstance(m, FixedPadConv2d) and m.stride == (2, 2)]
    # efficientnet_pytorch at 380 px: 190 (k3), 95 (k5), 48 (k3), 24 (k5) at the four stride-2 depthwise convs,
    # although the unpadded stem really gives 127 px from a 256 px input
    assert strided == [(0, 1, 0, 1), (2, 2, 2, 2), (0, 1, 0, 1), (1, 2, 1, 2)]
    for m in model.modules():
        if isinstance(m, FixedPadConv2d) and m.stride == (1, 1):
            half = m.kernel_size[0] // 2
            assert m.pads == (half, half, half, half)


def test_deepfakebench_b4_pads_are_not_those_of_its_real_input() -> None:
    x = torch.randn(2, 3, 256, 256, generator=torch.Generator().manual_seed(3))
    model = randomise(build_deepfakebench_b4(256, CM, 0.5), calibrate_on=x)
    dynamic = timm_tf_b4(depth_multiplier=0.5)
    stem = model.get_submodule("conv_stem")
    assert isinstance(stem, nn.Conv2d)
    dynamic.conv_stem = nn.Conv2d(3, stem.out_channels, 3, stride=2, bias=False)
    dynamic.load_state_dict(model.state_dict(), strict=True)
    out = forward(model, x)
    assert out.shape == (2, 2) and torch.isfinite(out).all() and (out[0] - out[1]).abs().max() > 1e-2
    # 256 px through the unpadded stem is 127 px, odd, where 380 px gives an even 190: the pads must differ
    assert (out - forward(dynamic.eval(), x)).abs().max() > 1e-3


def test_full_size_layouts_match_timm() -> None:
    with torch.device("meta"):
        pairs = [
            (build_sbi_b4(380), timm.create_model("tf_efficientnet_b4", num_classes=2)),
            (build_deepfakebench_b4(256), timm.create_model("tf_efficientnet_b4", num_classes=2)),
            (build_dfdc_b7(380), timm.create_model("tf_efficientnet_b7", num_classes=1)),
        ]
    for ours, reference in pairs:
        shapes = {k: v.shape for k, v in ours.state_dict().items()}
        assert shapes == {k: v.shape for k, v in reference.state_dict().items()}
        bns = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
        assert bns and all(bn.eps == TF_BN_EPS == 1e-3 for bn in bns)
    assert stage_depths_of(pairs[0][0]) == [2, 4, 4, 6, 6, 8, 2]
    assert stage_depths_of(pairs[2][0]) == [4, 7, 7, 10, 10, 13, 4]
    assert pairs[0][0].get_submodule("classifier").weight.shape == (2, 1792)
    assert pairs[2][0].get_submodule("classifier").weight.shape == (1, 2560)


# ---- key adapters --------------------------------------------------------------------------------------------------

# timm part -> efficientnet_pytorch part, written out here independently of the module under test
_IR = {
    "conv_pw": "_expand_conv",
    "bn1": "_bn0",
    "conv_dw": "_depthwise_conv",
    "bn2": "_bn1",
    "se.conv_reduce": "_se_reduce",
    "se.conv_expand": "_se_expand",
    "conv_pwl": "_project_conv",
    "bn3": "_bn2",
}
_DS = {
    "conv_dw": "_depthwise_conv",
    "bn1": "_bn1",
    "se.conv_reduce": "_se_reduce",
    "se.conv_expand": "_se_expand",
    "conv_pw": "_project_conv",
    "bn2": "_bn2",
}
_TOP = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1"}  # fmt: skip


def to_efficientnet_pytorch(state: dict[str, Tensor], prefix: str, head: str) -> dict[str, Tensor]:
    """A timm EfficientNet state dict as efficientnet_pytorch would save it: flat block numbers, its own names."""
    stages: dict[int, set[int]] = {}
    for key in state:
        if m := re.match(r"blocks\.(\d+)\.(\d+)\.", key):
            stages.setdefault(int(m[1]), set()).add(int(m[2]))
    offsets = [sum(len(stages[s]) for s in range(stage)) for stage in range(len(stages))]
    out: dict[str, Tensor] = {}
    for key, tensor in state.items():
        module, leaf = key.rsplit(".", 1)
        if m := re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(.+)", module):
            stage, index, part = int(m[1]), int(m[2]), m[3]
            inverted = f"blocks.{stage}.{index}.conv_pwl.weight" in state
            out[f"{prefix}_blocks.{offsets[stage] + index}.{(_IR if inverted else _DS)[part]}.{leaf}"] = tensor
        elif module == "classifier":
            out[f"{head}.{leaf}"] = tensor
        else:
            out[f"{prefix}{_TOP[module]}.{leaf}"] = tensor
    return out


@pytest.mark.parametrize("depth_multiplier", [0.5, 1.0, 2.0])
@pytest.mark.parametrize("explicit_depths", [False, True])
@pytest.mark.parametrize(
    ("builder", "adapter", "prefix", "head"),
    [(build_sbi_b4, adapt_sbi_b4, "net.", "net._fc"),
     (build_deepfakebench_b4, adapt_deepfakebench_b4, "backbone.efficientnet.", "backbone.last_layer")],
)  # fmt: skip
def test_efficientnet_pytorch_adapters_round_trip(
    builder: Builder, adapter: Adapter, prefix: str, head: str, depth_multiplier: float, explicit_depths: bool
) -> None:
    model = randomise(builder(256, channel_multiplier=0.25, depth_multiplier=depth_multiplier))
    state = model.state_dict()
    release = to_efficientnet_pytorch(state, prefix, head)
    assert any(k.startswith(f"{prefix}_blocks.0._depthwise_conv") for k in release)
    assert f"{prefix}_blocks.0._expand_conv.weight" not in release  # stage 0 is depthwise-separable
    depths = stage_depths_of(model) if explicit_depths else None
    adapted = adapter(release, stage_depths=depths)
    assert adapted.keys() == state.keys()
    assert all(adapted[k] is release_tensor for k, release_tensor in zip(state, release.values(), strict=True))
    builder(256, channel_multiplier=0.25, depth_multiplier=depth_multiplier).load_state_dict(adapted, strict=True)


def test_dfdc_adapter_round_trip_drops_only_the_encoder_classifier() -> None:
    model = randomise(build_dfdc_b7(380, channel_multiplier=0.25, depth_multiplier=0.5))
    state = model.state_dict()
    width = state["classifier.weight"].shape[1]
    release = {f"module.encoder.{k}": v for k, v in state.items() if not k.startswith("classifier.")}
    release["module.encoder.classifier.weight"] = torch.zeros(1000, width)
    release["module.encoder.classifier.bias"] = torch.zeros(1000)
    release["module.fc.weight"] = state["classifier.weight"]
    release["module.fc.bias"] = state["classifier.bias"]
    adapted = adapt_dfdc_b7(release)
    assert adapted.keys() == state.keys()
    assert all(adapted[k] is v for k, v in state.items())
    assert adapt_dfdc_b7({k.removeprefix("module."): v for k, v in release.items()}).keys() == state.keys()


def _tiny_release(prefix: str, head: str) -> dict[str, Tensor]:
    return to_efficientnet_pytorch(build_sbi_b4(64, CM, DM).state_dict(), prefix, head)


@pytest.mark.parametrize(
    ("adapter", "prefix", "head", "bad"),
    [(adapt_sbi_b4, "net.", "net._fc", "net._blocks.3._foo.weight"),
     (adapt_sbi_b4, "net.", "net._fc", "net._fc.running_mean"),
     (adapt_sbi_b4, "net.", "net._fc", "net._blocks.0._bn0.weight"),  # a depthwise-separable block has no _bn0
     (adapt_sbi_b4, "net.", "net._fc", "module.net._conv_stem.weight"),
     (adapt_deepfakebench_b4, "backbone.efficientnet.", "backbone.last_layer", "backbone.adjust_channel.0.weight"),
     (adapt_deepfakebench_b4, "backbone.efficientnet.", "backbone.last_layer", "backbone.efficientnet._fc.weight")],
)  # fmt: skip
def test_efficientnet_pytorch_adapters_name_an_unknown_key(adapter: Adapter, prefix: str, head: str, bad: str) -> None:
    release = _tiny_release(prefix, head)
    release[bad] = torch.zeros(1)
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        adapter(release)


@pytest.mark.parametrize("bad", ["module.encoder.head.weight", "module.fc2.weight", "module.encoder.blocks.x"])
def test_dfdc_adapter_names_an_unknown_key(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        adapt_dfdc_b7({"module.fc.weight": torch.zeros(1, 8), bad: torch.zeros(1)})


def test_wrong_stage_depths_are_refused() -> None:
    release = _tiny_release("net.", "net._fc")
    with pytest.raises(ValueError, match="stage_depths"):
        adapt_sbi_b4(release, stage_depths=[2, 4, 4, 6, 6, 8, 2])
