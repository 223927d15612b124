"""Architecture registry: name -> a frozen spec of how to build, feed, read and load that network.

Builders and loaders are referenced as "module:function" and imported on first use, so a pack of MesoNets
never pays for importing timm or transformers (several seconds each).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from models.detector import Normalisation, OutputSemantics

IMAGENET = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CLIP = Normalisation(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
UNIT = Normalisation()  # x / 255 only


class UnknownArchitectureError(LookupError):
    """The manifest names an architecture nobody registered."""


@dataclass(frozen=True)
class ArchSpec:
    name: str
    build: str  # "module:function"; called as build(input_size=..., **options) -> logits-producing module
    load_weights: str  # "module:function"; called as load_weights(model, checkpoint_path), strict
    input_size: int  # the size the published weights were trained at
    normalisation: Normalisation
    output: OutputSemantics

    def build_model(self, input_size: int, options: dict[str, Any]) -> nn.Module:
        model: nn.Module = _resolve(self.build)(input_size=input_size, **options)
        return model

    def load(self, model: nn.Module, checkpoint: Path) -> None:
        _resolve(self.load_weights)(model, checkpoint)


def _resolve(target: str) -> Callable[..., Any]:
    module, attr = target.split(":")
    fn: Callable[..., Any] = getattr(importlib.import_module(module), attr)
    return fn


_REGISTRY: dict[str, ArchSpec] = {}


def register(spec: ArchSpec) -> ArchSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"architecture {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def get_arch(name: str) -> ArchSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownArchitectureError(f"unknown architecture {name!r}; known: {sorted(_REGISTRY)}") from None


def architectures() -> tuple[str, ...]:
    return tuple(sorted(_REGISTRY))


_TORCH = "models.checkpoint:load_checkpoint"
_MESONET = "models.mesonet:load_mesonet_weights"
_P_REAL = OutputSemantics("sigmoid_real")
_P_FAKE = OutputSemantics("sigmoid_fake")
_CLASS_1_FAKE = OutputSemantics("softmax", fake_index=1)

for _spec in (
    ArchSpec("meso4", "models.mesonet:Meso4", _MESONET, 256, UNIT, _P_REAL),
    ArchSpec("mesoinception4", "models.mesonet:MesoInception4", _MESONET, 256, UNIT, _P_REAL),
    ArchSpec("xception", "models.xception:build_xception", _TORCH, 224, IMAGENET, _CLASS_1_FAKE),
    ArchSpec("efficientnet_b4", "models.efficientnet:build_efficientnet_b4", _TORCH, 224, IMAGENET, _CLASS_1_FAKE),
    ArchSpec("f3net", "models.f3net:F3Net", _TORCH, 224, IMAGENET, _CLASS_1_FAKE),
    ArchSpec(
        "effort_clip",
        "models.effort_clip:EffortClip",
        "models.effort_clip:load_effort_weights",
        224,
        CLIP,
        _CLASS_1_FAKE,
    ),
    ArchSpec("hybrid", "models.hybrid:HybridResNetViT", _TORCH, 224, IMAGENET, _P_FAKE),
):
    register(_spec)
