"""How a detector's face crop is cut from a frame: the convention its weights were trained on.

Pure data (no torch, no cv2), so manifests, the API and the pipeline can name a convention without loading a
model. `workers.media.crops` cuts crops by these rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Margin = Literal["pixels", "box_fraction", "square_scale"]
Border = Literal["clip", "shift", "square"]
Fit = Literal["stretch", "fit_pad"]
Interpolation = Literal["area", "linear", "cubic", "area_or_cubic", "pil_bilinear"]


@dataclass(frozen=True)
class CropSpec:
    """One crop convention.

    margin: "pixels" grows the box by `amount` px on each side; "box_fraction" grows it by `amount` x the box's
    width (left/right) and height (top/bottom); both round the grown box outwards to whole pixels. "square_scale"
    takes a square of side round(`amount` x max(w, h)) around the box centre, its corner rounded to the nearest
    pixel.
    border: "clip" cuts the window at the frame edge (the crop may lose its shape); "shift" moves a window that
    fits inside the frame so it keeps its size (clipped only where it is larger than the frame); "square" (square
    windows only) moves a window past the top or left edge inside and shrinks one past the bottom or right edge,
    both sides alike, so the crop stays square but off-centre.
    fit: "stretch" resizes to size x size whatever the aspect; "fit_pad" resizes the longer side to `size`,
    the shorter to int(side x scale), and pads with zeros around the centre (the odd pixel right/bottom).
    interpolation: OpenCV's area / bilinear / bicubic; "area_or_cubic" is area unless a side is enlarged, then
    bicubic; "pil_bilinear" is PIL's bilinear resize (torchvision's Resize on PIL images), antialiased when
    shrinking, unlike OpenCV's.
    """

    name: str
    margin: Margin
    amount: float
    border: Border
    fit: Fit
    interpolation: Interpolation

    def __post_init__(self) -> None:
        if self.amount < 0 or (self.margin == "square_scale" and self.amount <= 0):
            raise ValueError(f"crop {self.name!r}: amount must be positive, got {self.amount}")
        if self.border == "square" and self.margin != "square_scale":
            raise ValueError(f"crop {self.name!r}: border 'square' needs margin 'square_scale'")


# The seed's crop (MTCNN box + 30 px, stretched); what Verity's own and the MesoNet members use.
SEED_PAD30 = CropSpec("seed_pad30", "pixels", 30, "clip", "stretch", "area_or_cubic")
# DeepfakeBench trains on landmark-aligned squares of 1.3x the face; without 81-point landmarks Verity takes the
# 1.3x square around the MTCNN box, moved inside the frame (the interop test crops are cut exactly so).
SQUARE_13 = CropSpec("square_1.3", "square_scale", 1.3, "shift", "stretch", "area")
# FaceForensics++ classification/detect_from_video.py get_boundingbox: a square of int(1.3 x max(w, h)) around the
# integer centre of the dlib box; its corner is clamped to >= 0 and its side cut to fit the frame, so the crop stays
# square (Verity rounds where it truncates: <= 1 px). dataset/transform.py then applies torchvision
# Resize((299, 299)) to the PIL image: bilinear.
FFPP_SQUARE_13 = CropSpec("ffpp_square_1.3", "square_scale", 1.3, "square", "stretch", "pil_bilinear")
# DFDC winner (kernel_utils.py FaceExtractor, preprocessing/extract_crops.py): the MTCNN box truncated to integers,
# + h//3, w//3 on each side, clipped; isotropically_resize_image (INTER_AREA down, INTER_CUBIC up, short side
# truncated) and put_to_center (zero padding). Rounding the grown box outwards instead moves an edge by <= 2 px.
DFDC_THIRD_PAD = CropSpec("dfdc_third_pad", "box_fraction", 1 / 3, "clip", "fit_pad", "area_or_cubic")
# Self-Blended Images (src/inference/preprocess.py, crop_face in test mode): the RetinaFace box + w/8, h/8 on each
# side (w/4 halved), clipped, then cv2.resize to 380 x 380 with its default bilinear interpolation.
SBI_EIGHTH = CropSpec("sbi_eighth", "box_fraction", 1 / 8, "clip", "stretch", "linear")

CONVENTIONS: dict[str, CropSpec] = {
    spec.name: spec for spec in (SEED_PAD30, SQUARE_13, FFPP_SQUARE_13, DFDC_THIRD_PAD, SBI_EIGHTH)
}


def crop_convention(name: str) -> CropSpec:
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"unknown crop convention {name!r}; known: {sorted(CONVENTIONS)}") from None
