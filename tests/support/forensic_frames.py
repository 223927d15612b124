"""Synthetic frames and face sightings with a known answer, for the forensic signal tests."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from core.media.decode import Frame
from workers.forensics.readings import Seen, Sighting, regions_of

FACE_BOX = (80.0, 60.0, 160.0, 160.0)  # x1, y1, x2, y2 inside a 240 x 240 frame


def textured(side: int = 240, seed: int = 0, noise: float = 0.0) -> NDArray[np.uint8]:
    """A grey RGB frame of smooth random texture (blobs a few px wide), plus Gaussian noise of std ``noise``."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(40, 215, (side // 4 + 1, side // 4 + 1))
    texture = np.kron(coarse, np.ones((4, 4)))[:side, :side]
    # A little smoothing, so the texture has no 4-px grid: average with shifted copies.
    texture = (texture + np.roll(texture, 2, 0) + np.roll(texture, 2, 1) + np.roll(texture, (2, 2), (0, 1))) / 4
    texture = texture + rng.normal(0, noise, texture.shape) if noise else texture
    grey = np.clip(texture, 0, 255).round().astype(np.uint8)
    return np.repeat(grey[:, :, None], 3, axis=2)


def frame(image: NDArray[np.uint8], index: int = 0) -> Frame:
    return Frame(index, index / 25, image)


def sighting(image: NDArray[np.uint8], after: NDArray[np.uint8] | None = None, track_id: int = 0) -> Sighting:
    return Sighting(track_id, frame(image), FACE_BOX, None if after is None else frame(after, 1))


def seen(*sightings: Sighting) -> list[Seen]:
    return regions_of(list(sightings))


def face_slice() -> tuple[slice, slice]:
    x1, y1, x2, y2 = (int(v) for v in FACE_BOX)
    return slice(y1, y2), slice(x1, x2)
