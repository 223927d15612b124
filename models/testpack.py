"""A TEST-ONLY pack: each of Verity's own formats in a tiny configuration with seeded random weights.

It exercises building, strict loading and inference for each of them in seconds on a CPU, and (through `crop`
overrides) every crop convention in the pipeline. Its scores mean nothing; the manifest says so in its name and
with `test_pack: true`. The public release formats are tested against the shared interop vectors instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from models.effort_clip import decompose_svd_weights
from models.formats import get_format
from models.integrity import sha256_file

TEST_PACK_NAME = "verity-test-pack (TEST-ONLY random weights)"


@dataclass(frozen=True)
class TinyMember:
    format: str
    input_size: int
    aggregator: str
    options: dict[str, Any] = field(default_factory=dict)
    crop: str | None = None  # a convention other than the format's, so the pipeline cuts each kind


# MesoNet is tiny already; the others shrink widths/depths and run on small crops.
TINY_MEMBERS = (
    TinyMember("meso4", 256, "confident"),
    TinyMember("mesoinception4", 256, "mean", crop="square_1.3"),
    TinyMember("xception", 64, "topk:4", {"middle_blocks": 0}, crop="ffpp_square_1.3"),
    TinyMember(
        "efficientnet_b4", 64, "softmax:5", {"channel_multiplier": 0.25, "depth_multiplier": 0.2}, "dfdc_third_pad"
    ),
    TinyMember(
        "effort_clip",
        56,  # a multiple of the 14-pixel patch
        "mean",
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "patch_size": 14,
        },
    ),
    TinyMember(
        "hybrid",
        64,
        "confident",
        {"resnet_layers": [1, 1, 1, 1], "vit_embed_dim": 32, "vit_depth": 1, "vit_num_heads": 2, "head_hidden": 16},
        "sbi_eighth",
    ),
)


def _checkpoint(member: TinyMember, seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    model = get_format(member.format).build_model(member.input_size, member.options)
    state = model.state_dict()
    if member.format == "effort_clip":
        state = decompose_svd_weights(state)  # stored the way Effort's training code saves it
    return state


def write_test_pack(outdir: Path, seed: int = 0) -> Path:
    """Write one checkpoint per format and `outdir/pack.yaml`; returns the manifest path."""
    outdir.mkdir(parents=True, exist_ok=True)
    members = []
    for index, member in enumerate(TINY_MEMBERS):
        filename = f"{member.format}_tiny.pt"
        torch.save(_checkpoint(member, seed + index), outdir / filename)
        members.append(
            {
                "name": f"{member.format}_tiny",
                "format": member.format,
                "checkpoint": filename,
                "sha256": sha256_file(outdir / filename),
                "input_size": member.input_size,
                "aggregator": member.aggregator,
                "weight": 1.0,
                "options": member.options,
                **({"crop": member.crop} if member.crop else {}),
            }
        )
    manifest = {
        "name": TEST_PACK_NAME,
        "version": f"test-{seed}",
        "test_pack": True,
        "description": "Tiny architectures with seeded random weights for tests. Scores are meaningless.",
        "weights_dir": ".",
        "members": members,
        "fusion": {"method": "weighted_average", "t_low": 0.35, "t_high": 0.65, "min_models": 2},
    }
    path = outdir / "pack.yaml"
    path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return path
