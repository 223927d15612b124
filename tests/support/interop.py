"""The shared interop test vectors (../shared/interop): public checkpoint formats, generated deterministically,
with the logits the original models' own code computes on fixed face crops."""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

INTEROP = Path(__file__).resolve().parents[3] / "shared" / "interop"

# Vector stem -> the Verity format that runs it, and builder options for the tiny variants.
VECTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "deepfakebench_xception": ("deepfakebench_xception", {}),
    "deepfakebench_efficientnetb4": ("deepfakebench_efficientnetb4", {}),
    "deepfakebench_f3net": ("deepfakebench_f3net", {}),
    "deepfakebench_effort_tiny": (
        "deepfakebench_effort",
        {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
    ),
    "ffpp_xception": ("ffpp_xception", {}),
    "dfdc_tf_efficientnet_b7": ("dfdc_tf_efficientnet_b7", {}),
    "sbi_efficientnetb4": ("sbi_efficientnetb4", {}),
}


@dataclass(frozen=True)
class Vector:
    stem: str
    format: str
    options: dict[str, Any]
    expected: dict[str, Any]
    checkpoint: Path

    def crops(self) -> np.ndarray:
        return np.asarray(np.load(INTEROP / self.expected["input"]["file"]))


def generator() -> ModuleType:
    if not (INTEROP / "make_checkpoint.py").is_file():
        pytest.skip(f"interop vectors {INTEROP} are absent (expected ../shared/interop beside the repo)")
    if str(INTEROP) not in sys.path:
        sys.path.insert(0, str(INTEROP))
    return importlib.import_module("make_checkpoint")


def expected(stem: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((INTEROP / "expected" / f"{stem}.json").read_text())
    return data


def make_vector(stem: str, folder: Path) -> Vector:
    """Write the vector's checkpoint into `folder` (once) and check it holds exactly the reference values."""
    exp = expected_or_skip(stem)
    fmt, options = VECTORS[stem]
    path = folder / f"{stem}.ckpt"
    if not path.exists():
        info = generator().make(exp["format"], path, tiny=exp["variant"] == "tiny")
        assert info["tensors_sha256"] == exp["checkpoint"]["tensors_sha256"], f"{stem}: generator values differ"
    return Vector(stem, fmt, options, exp, path)


def expected_or_skip(stem: str) -> dict[str, Any]:
    generator()
    return expected(stem)
