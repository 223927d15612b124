"""Pixel normalisations by name (pure data: the manifest and the API read them without torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Normalisation:
    """Per-channel mean/std applied after scaling pixels to [0, 1]."""

    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or any(s <= 0 for s in self.std):
            raise ValueError(f"normalisation needs 3 means and 3 positive stds, got {self.mean} / {self.std}")


IMAGENET = Normalisation(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
CLIP = Normalisation(mean=(0.48145466, 0.4578275, 0.40821073), std=(0.26862954, 0.26130258, 0.27577711))
HALF = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))  # x / 255 mapped to [-1, 1]
UNIT = Normalisation()  # x / 255 only
NAMED: dict[str, Normalisation] = {"imagenet": IMAGENET, "clip": CLIP, "half": HALF, "unit": UNIT}


def normalisation_name(norm: Normalisation) -> str:
    """The name of a normalisation, or its numbers when it has none (for results and logs)."""
    return next((name for name, known in NAMED.items() if known == norm), f"mean={norm.mean} std={norm.std}")
