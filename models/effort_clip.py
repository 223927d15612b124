"""Effort (Yan et al., ICML 2025): CLIP ViT-L/14 vision tower, pooled output -> Linear(1024, 2), class 1 = FAKE.

Module names follow Effort's DeepfakeBench detector (`backbone.*` is the CLIP vision transformer, `head` the
classifier), so its checkpoints map key for key once the SVD-decomposed attention projections are folded back
into plain weights.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from transformers import CLIPVisionConfig, CLIPVisionModel

from models.checkpoint import CheckpointError


class EffortClip(nn.Module):
    def __init__(
        self,
        input_size: int = 224,
        hidden_size: int = 1024,
        intermediate_size: int = 4096,
        num_hidden_layers: int = 24,
        num_attention_heads: int = 16,
        patch_size: int = 14,
    ) -> None:
        super().__init__()
        config = CLIPVisionConfig(
            image_size=input_size,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=num_hidden_layers,
            num_attention_heads=num_attention_heads,
            patch_size=patch_size,
        )
        self.backbone = CLIPVisionModel(config)
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.backbone(pixel_values=x).pooler_output)
        return logits


# Effort's SVDResidualLinear keeps W = U_r diag(S_r) V_r (stored whole as weight_main) plus a trainable
# residual U_residual diag(S_residual) V_residual. Its V tensors are torch.linalg.svd's Vh: rows are singular
# vectors, shape (rank, in_features), so no transpose is needed.
_MAIN = ("U_r", "S_r", "V_r")
_RESIDUAL = ("U_residual", "S_residual", "V_residual")
_SVD_PARTS = frozenset(("weight_main", *_MAIN, *_RESIDUAL))


def _product(prefix: str, parts: Mapping[str, torch.Tensor], names: tuple[str, str, str]) -> torch.Tensor:
    u, s, v = (parts[n] for n in names)
    if u.ndim != 2 or s.ndim != 1 or v.ndim != 2 or not u.shape[1] == s.shape[0] == v.shape[0]:
        shapes = {n: tuple(parts[n].shape) for n in names}
        raise CheckpointError(f"{prefix}: SVD factors do not compose, shapes {shapes}")
    return (u * s) @ v


def _fold(prefix: str, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
    present = set(parts)
    for group in (_MAIN, _RESIDUAL):
        if present & set(group) and not present >= set(group):
            raise CheckpointError(f"{prefix}: incomplete SVD factors, has {sorted(present)}, needs all of {group}")
    if "weight_main" in parts:
        weight = parts["weight_main"]  # the U_r/S_r/V_r it was built from are redundant copies
    elif present >= set(_MAIN):
        weight = _product(prefix, parts, _MAIN)
    else:
        raise CheckpointError(f"{prefix}: SVD layer without weight_main or U_r/S_r/V_r ({sorted(present)})")
    if present >= set(_RESIDUAL):
        residual = _product(prefix, parts, _RESIDUAL)
        if residual.shape != weight.shape:
            raise CheckpointError(f"{prefix}: residual {tuple(residual.shape)} != main {tuple(weight.shape)}")
        weight = weight + residual
    return weight


def fold_svd_weights(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Replace every Effort SVD-decomposed linear layer's factors by its full `weight` matrix."""
    out: dict[str, torch.Tensor] = {}
    groups: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        prefix, _, leaf = key.rpartition(".")
        if leaf in _SVD_PARTS:
            groups.setdefault(prefix, {})[leaf] = value
        else:
            out[key] = value
    for prefix, parts in groups.items():
        out[f"{prefix}.weight"] = _fold(prefix, parts)
    return out


def decompose_svd_weights(
    state: Mapping[str, torch.Tensor], rank_drop: int = 1, pattern: str = ".self_attn."
) -> dict[str, torch.Tensor]:
    """The inverse, in Effort's layout: each matching linear weight -> weight_main, U/S/V_r and the residual
    of its `rank_drop` smallest singular values. Used to write test checkpoints in Effort's format.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if pattern not in key or not key.endswith(".weight") or value.ndim != 2:
            out[key] = value
            continue
        prefix = key.removesuffix(".weight")
        u, s, vh = torch.linalg.svd(value.double(), full_matrices=False)
        r = len(s) - rank_drop
        factors = {
            "U_r": u[:, :r],
            "S_r": s[:r],
            "V_r": vh[:r],
            "U_residual": u[:, r:],
            "S_residual": s[r:],
            "V_residual": vh[r:],
        }
        factors["weight_main"] = (factors["U_r"] * factors["S_r"]) @ factors["V_r"]
        out.update({f"{prefix}.{name}": t.to(value.dtype).contiguous() for name, t in factors.items()})
    return out


def fold_effort_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An Effort state dict (SVD form or plain) in EffortClip's names -> plain weights EffortClip loads."""
    folded = fold_svd_weights(state)
    # Older transformers saved CLIP's position_ids (always arange) as a persistent buffer; newer ones do not.
    position_ids = folded.pop("backbone.embeddings.position_ids", None)
    if position_ids is not None and not torch.equal(position_ids.flatten(), torch.arange(position_ids.numel())):
        raise CheckpointError("backbone.embeddings.position_ids is not 0..n-1")
    return folded
