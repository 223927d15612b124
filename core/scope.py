"""Scope: whether the pack can judge this media at all, or must abstain (verdict NOT_APPLICABLE) with a reason.

Face classifiers are trained on photographed faces of a usable size. A cartoon or CGI face (flat fills, no
sensor noise) or a face far smaller than every member's input is outside what their scores mean, so a confident
REAL or FAKE there would be noise presented as a finding. Pure numpy: the pipeline measures, this decides.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray


class ScopeReason(StrEnum):
    NON_PHOTOGRAPHIC = "non_photographic_faces"
    FACES_TOO_SMALL = "faces_too_small"


# Neighbouring pixels closer than this many grey levels (the same level once rounded) count as flat: a camera's
# noise rarely leaves three pixels of a face equal, a drawn or flat-rendered fill (even after H.264) mostly does.
FLAT_LEVELS = 0.5
# Above this share of flat pixels in the most photographic track's face, the faces are not photographs. On the 37
# test clips the real faces reach 0.35 at most (a dim, heavily compressed talking head), the fakes too; a
# cel-shaded face is mostly flat fill. Set well above the real ones: an abstention on a real video is a miss.
MAX_FLAT_SHARE = 0.6
# A member upscales its crop from the face box; beyond this factor for every member there is too little face to
# judge. The shipped packs' smallest inputs are 256 px (MesoNet, DeepfakeBench) and 380 px (DFDC winner, SBI):
# faces under 43 and 63 px. The smallest real test faces (FF++ c23, 73 px) stay in scope for every pack.
MAX_UPSCALE = 6.0


def flat_share(luma: NDArray[np.floating], mask: NDArray[np.bool_]) -> float:
    """The share of ``mask``'s pixels whose right and lower neighbours are both closer than FLAT_LEVELS to them."""
    if luma.shape[0] < 2 or luma.shape[1] < 2:
        return math.nan
    values = luma.astype(np.float32)
    flat = (np.abs(np.diff(values, axis=1))[:-1, :] < FLAT_LEVELS) & (
        np.abs(np.diff(values, axis=0))[:, :-1] < FLAT_LEVELS
    )
    inside = mask[:-1, :-1]
    return float(flat[inside].mean()) if inside.any() else math.nan


def judge_scope(flat: float, face_px: float, member_sizes: Sequence[int]) -> ScopeReason | None:
    """Why the pack cannot judge the media, or None when it can (or nothing was measured to say otherwise).

    ``flat``: the flat share of the most photographic track's faces; ``face_px``: the largest track's face size
    (the short side of its box, median); ``member_sizes``: every member's input size.
    """
    if math.isfinite(flat) and flat > MAX_FLAT_SHARE:
        return ScopeReason.NON_PHOTOGRAPHIC
    if member_sizes and math.isfinite(face_px) and face_px * MAX_UPSCALE < min(member_sizes):
        return ScopeReason.FACES_TOO_SMALL
    return None
