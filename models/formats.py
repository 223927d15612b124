"""Checkpoint formats: one per public release, each knowing how its authors built, fed and read the network.

A format fixes the container (where the state dict sits in the file), the key adapter (renames, and the keys
the release holds but never uses), the architecture that computes what the original computes, its output
semantics, input size, normalisation and face-crop convention, and an identity the built network must have
(padding style, BatchNorm epsilon) so that a library change cannot swap in a look-alike with the same shapes.
Builders and loaders are "module:function" strings imported on first use, so a pack of MesoNets never pays for
importing timm or transformers.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from core.crop_spec import DFDC_THIRD_PAD, FFPP_SQUARE_13, SBI_EIGHTH, SEED_PAD30, SQUARE_13, CropSpec
from core.preprocessing import CLIP, HALF, IMAGENET, UNIT, Normalisation
from models.detector import OutputSemantics
from models.key_adapter import KeyAdapter

Padding = Literal["tf_same", "symmetric"]


class UnknownFormatError(LookupError):
    """The manifest names a format nobody registered."""


@dataclass(frozen=True)
class ArchIdentity:
    """What the built network must be, beyond its shapes: checked on the module tree after building.

    bn_eps: every BatchNorm's epsilon (TF ports use 1e-3, PyTorch's default is 1e-5).
    padding: "tf_same" (strided convs pad asymmetrically, as TensorFlow's SAME) or "symmetric" (PyTorch style).
    """

    bn_eps: float | None = None
    padding: Padding | None = None


@dataclass(frozen=True)
class CheckpointFormat:
    name: str
    source: str  # where the release comes from, for people
    build: str  # "module:function"; build(input_size=..., **options) -> a module returning logits
    input_size: int
    normalisation: Normalisation
    output: OutputSemantics
    crop: CropSpec
    # The state dict's path inside the file: () a bare state dict, ("model",) {'model': ...}; None unwraps
    # the usual wrappers and DataParallel/backbone prefixes (Verity's own checkpoints).
    wrapper: tuple[str, ...] | None = None
    adapter: KeyAdapter | None = None
    transform: str | None = None  # "module:function" state -> state, after the adapter (SVD folding, ...)
    load_weights: str | None = None  # "module:function"(model, path) for files that are not torch's (Keras)
    signature: tuple[str, ...] = ()  # release keys that only this release holds: identifies its files
    identity: ArchIdentity = ArchIdentity()
    fixed_size: bool = False  # the network only runs at input_size (F3Net's DCT matrices)
    release_files: tuple[str, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)  # fixed builder arguments of this release

    def build_model(self, input_size: int, options: Mapping[str, Any]) -> nn.Module:
        model: nn.Module = resolve(self.build)(input_size=input_size, **{**self.options, **options})
        return model

    def adapt(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        adapted = self.adapter(state) if self.adapter else dict(state)
        if self.transform:
            adapted = resolve(self.transform)(adapted)
        return adapted

    def matches(self, keys: set[str]) -> bool:
        return bool(self.signature) and all(k in keys for k in self.signature)


def resolve(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


_REGISTRY: dict[str, CheckpointFormat] = {}


def register(fmt: CheckpointFormat) -> CheckpointFormat:
    if fmt.name in _REGISTRY:
        raise ValueError(f"format {fmt.name!r} is already registered")
    _REGISTRY[fmt.name] = fmt
    return fmt


def get_format(name: str) -> CheckpointFormat:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownFormatError(f"unknown format {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def formats() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


def formats_matching(keys: set[str]) -> list[CheckpointFormat]:
    """The public releases whose signature keys a raw state dict holds."""
    return [fmt for fmt in _REGISTRY.values() if fmt.matches(keys)]


_MESONET = "models.mesonet:load_mesonet_weights"
_P_REAL = OutputSemantics("sigmoid_real")
_P_FAKE = OutputSemantics("sigmoid_fake")
_CLASS_1_FAKE = OutputSemantics("softmax", fake_index=1)
_TF = ArchIdentity(bn_eps=1e-3, padding="tf_same")
_TORCH_STYLE = ArchIdentity(bn_eps=1e-5, padding="symmetric")
_XCEPTION = "models.xception:build_xception"
_DFB = "SCLBD/DeepfakeBench v1.0.1"
# DeepfakeBench builds an adjust_channel block for a mode the released detectors do not run in.
_DFB_UNUSED = (r"backbone\.adjust_channel\..*",)

for _fmt in (
    # Verity's own formats: the network's own state dict (module./backbone. prefixes tolerated).
    CheckpointFormat(
        "meso4",
        "MesoNet Meso4, Keras 2.1.5 HDF5 (DariusAf/MesoNet)",
        "models.mesonet:Meso4",
        256,
        UNIT,
        _P_REAL,
        SEED_PAD30,
        load_weights=_MESONET,
        release_files=("Meso4_DF.h5", "Meso4_F2F.h5"),
    ),
    CheckpointFormat(
        "mesoinception4",
        "MesoNet MesoInception4, Keras 2.1.5 HDF5 (DariusAf/MesoNet)",
        "models.mesonet:MesoInception4",
        256,
        UNIT,
        _P_REAL,
        SEED_PAD30,
        load_weights=_MESONET,
        release_files=("MesoInception_DF.h5", "MesoInception_F2F.h5"),
    ),
    CheckpointFormat(
        "xception",
        "Verity: timm legacy_xception state dict, 2 classes",
        _XCEPTION,
        224,
        IMAGENET,
        _CLASS_1_FAKE,
        SEED_PAD30,
        identity=_TORCH_STYLE,
    ),
    CheckpointFormat(
        "efficientnet_b4",
        "Verity: timm efficientnet_b4 (PyTorch-style padding) state dict, 2 classes",
        "models.efficientnet:build_efficientnet_b4",
        224,
        IMAGENET,
        _CLASS_1_FAKE,
        SEED_PAD30,
        identity=_TORCH_STYLE,
    ),
    CheckpointFormat(
        "effort_clip",
        "Verity: Effort CLIP ViT-L/14 state dict (plain or SVD form)",
        "models.effort_clip:EffortClip",
        224,
        CLIP,
        _CLASS_1_FAKE,
        SEED_PAD30,
        transform="models.effort_clip:fold_effort_state",
    ),
    CheckpointFormat(
        "hybrid",
        "Verity: ResNet18 + ViT-B/16 hybrid state dict",
        "models.hybrid:HybridResNetViT",
        224,
        IMAGENET,
        _P_FAKE,
        SEED_PAD30,
    ),
    # Public releases.
    CheckpointFormat(
        "deepfakebench_xception",
        f"{_DFB} XceptionDetector (xception.yaml)",
        _XCEPTION,
        256,
        HALF,
        _CLASS_1_FAKE,
        SQUARE_13,
        wrapper=(),
        adapter=KeyAdapter(renames=((r"backbone\.last_linear\.", "fc."), (r"backbone\.", "")), drop=_DFB_UNUSED),
        signature=("backbone.last_linear.weight", "backbone.adjust_channel.0.weight", "backbone.conv1.weight"),
        identity=_TORCH_STYLE,
        release_files=("xception_best.pth",),
    ),
    CheckpointFormat(
        "deepfakebench_f3net",
        f"{_DFB} F3netDetector (f3net.yaml): FAD head + 12-channel Xception",
        "models.f3net:F3Net",
        256,
        HALF,
        _CLASS_1_FAKE,
        SQUARE_13,
        wrapper=(),
        adapter=KeyAdapter(
            renames=(
                (r"FAD_head\._DCT_all_T$", "frequency.dct_t"),
                (r"FAD_head\._DCT_all$", "frequency.dct"),
                (r"FAD_head\.filters\.", "frequency.bands."),
                (r"backbone\.last_linear\.1\.", "backbone.fc."),
            ),
            drop=_DFB_UNUSED,
        ),
        transform="models.f3net:check_frequency_constants",
        signature=("FAD_head._DCT_all", "backbone.last_linear.1.weight"),
        identity=_TORCH_STYLE,
        fixed_size=True,
        release_files=("f3net_best.pth",),
    ),
    CheckpointFormat(
        "deepfakebench_efficientnetb4",
        f"{_DFB} EfficientNetB4Detector (efficientnet_pytorch 0.7.1 B4)",
        "models.tf_efficientnet:build_deepfakebench_b4",
        256,
        HALF,
        _CLASS_1_FAKE,
        SQUARE_13,
        wrapper=(),
        transform="models.tf_efficientnet:adapt_deepfakebench_b4",
        signature=("backbone.efficientnet._conv_stem.weight", "backbone.last_layer.weight"),
        identity=_TF,
        release_files=("effnb4_best.pth",),
    ),
    CheckpointFormat(
        "deepfakebench_effort",
        f"{_DFB} EffortDetector: CLIP ViT-L/14, SVD-residual attention",
        "models.effort_clip:EffortClip",
        224,
        CLIP,
        _CLASS_1_FAKE,
        SQUARE_13,
        wrapper=(),
        transform="models.effort_clip:fold_effort_state",
        signature=("backbone.encoder.layers.0.self_attn.q_proj.weight_main", "head.weight"),
        release_files=("effort_clip_L14_trainOn_FaceForensic.pth",),
    ),
    CheckpointFormat(
        "ffpp_xception",
        "FaceForensics++ TransferModel('xception'), converted from the pickled module",
        _XCEPTION,
        299,
        HALF,
        _CLASS_1_FAKE,
        FFPP_SQUARE_13,
        wrapper=(),
        adapter=KeyAdapter(renames=((r"model\.last_linear\.", "fc."), (r"model\.", ""))),
        signature=("model.last_linear.weight", "model.conv1.weight"),
        identity=_TORCH_STYLE,
        release_files=("all_c23.p", "all_raw.p", "all_c40.p", "full_c23.p"),
    ),
    CheckpointFormat(
        "dfdc_tf_efficientnet_b7",
        "DFDC winner (selimsef) DeepFakeClassifier tf_efficientnet_b7_ns, 1 logit",
        "models.tf_efficientnet:build_dfdc_b7",
        380,
        IMAGENET,
        _P_FAKE,
        DFDC_THIRD_PAD,
        wrapper=("state_dict",),
        transform="models.tf_efficientnet:adapt_dfdc_b7",
        signature=("module.encoder.conv_stem.weight", "module.fc.weight"),
        identity=_TF,
        release_files=("final_111_DeepFakeClassifier_tf_efficientnet_b7_ns_0_36",),
    ),
    CheckpointFormat(
        "sbi_efficientnetb4",
        "Self-Blended Images (mapooon) Detector: efficientnet_pytorch B4, advprop",
        "models.tf_efficientnet:build_sbi_b4",
        380,
        UNIT,
        _CLASS_1_FAKE,
        SBI_EIGHTH,
        wrapper=("model",),
        transform="models.tf_efficientnet:adapt_sbi_b4",
        signature=("net._conv_stem.weight", "net._fc.weight"),
        identity=_TF,
        release_files=("FFraw.tar", "FFc23.tar"),
    ),
):
    register(_fmt)
