"""A heatmap as a PNG a moderator reads at a glance: the member's crop, and beside it the same crop with the map
blended in (JET: blue where the member found little evidence of FAKE, red where it found most), a legend under both."""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import Image, ImageDraw
from pytorch_grad_cam.utils.image import show_cam_on_image

PANEL = 224  # px: crops smaller than this (test packs, MesoNet's 256 stays) are enlarged to be seen
GAP = 6
LEGEND = 22
CROP_WEIGHT = 0.55  # share of the crop in the blend: the face stays recognisable under the colours


def blend(crop: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """uint8 (S, S, 3) RGB crop + float (S, S) map in [0, 1] -> uint8 (S, S, 3) RGB overlay."""
    if cam.shape != crop.shape[:2]:
        raise ValueError(f"map {cam.shape} does not match crop {crop.shape[:2]}")
    image = crop.astype(np.float32) / 255.0
    overlay: np.ndarray = show_cam_on_image(image, np.clip(cam, 0.0, 1.0), use_rgb=True, image_weight=CROP_WEIGHT)
    return overlay


def _panel(image: np.ndarray) -> Image.Image:
    size = max(PANEL, image.shape[0])
    return Image.fromarray(image).resize((size, size), Image.Resampling.BICUBIC)


def _legend(width: int) -> Image.Image:
    ramp = np.linspace(0, 255, width, dtype=np.float32).astype(np.uint8)[None, :].repeat(8, axis=0)
    colours = cv2.cvtColor(cv2.applyColorMap(ramp, cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    legend = Image.new("RGB", (width, LEGEND), "white")
    legend.paste(Image.fromarray(colours), (0, 0))
    draw = ImageDraw.Draw(legend)
    more = "more evidence of FAKE"
    draw.text((2, 9), "less evidence of FAKE", fill=(29, 35, 48))
    draw.text((width - 2 - draw.textlength(more), 9), more, fill=(29, 35, 48))
    return legend


def overlay_png(crop: np.ndarray, cam: np.ndarray) -> bytes:
    """The crop and its heatmap overlay side by side, with a colour legend, as PNG bytes."""
    left, right = _panel(crop), _panel(blend(crop, cam))
    width = left.width + GAP + right.width
    sheet = Image.new("RGB", (width, left.height + LEGEND), "white")
    sheet.paste(left, (0, 0))
    sheet.paste(right, (left.width + GAP, 0))
    sheet.paste(_legend(width), (0, left.height))
    out = io.BytesIO()
    sheet.save(out, format="PNG", optimize=True)
    return out.getvalue()
