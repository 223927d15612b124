"""Face crops cut by each detector's convention: window arithmetic on numbered images, and the interop test crops."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from core.crop_spec import (
    CONVENTIONS,
    DFDC_THIRD_PAD,
    FFPP_SQUARE_13,
    SBI_EIGHTH,
    SEED_PAD30,
    SQUARE_13,
    CropSpec,
    crop_convention,
)
from core.media.decode import Frame, read_frames
from core.preprocessing import HALF
from core.results import Preprocessing
from tests.conftest import TESTDATA, shared_file
from workers.media import crops as crops_module
from workers.media.crops import Box, cut_crop, cut_crops
from workers.media.faces import Face
from workers.members import member_preprocessing
from workers.pipeline import _Detection, member_crops

INTEROP = TESTDATA.parent / "interop" / "inputs"
INTEROP_SIZES = (224, 256, 299, 380)


def numbered_image(height: int = 300, width: int = 400) -> np.ndarray:
    """Every pixel distinct enough to tell which region a crop came from."""
    y, x = np.mgrid[0:height, 0:width]
    return np.dstack([x % 256, y % 256, (x + y) % 256]).astype(np.uint8)


def resized(region: np.ndarray, width: int, height: int, flag: int) -> np.ndarray:
    return cv2.resize(region, (width, height), interpolation=flag)


def pil_bilinear(region: np.ndarray, size: int) -> np.ndarray:
    return np.asarray(Image.fromarray(region).resize((size, size), Image.Resampling.BILINEAR))


def pad(amount: int) -> CropSpec:
    return replace(SEED_PAD30, name=f"pad{amount}", amount=amount)


# --- the seed's crop (SEED_PAD30): box + N px, clipped, stretched, area down / cubic up --------------------------


def test_seed_crop_pads_the_box_and_resizes() -> None:
    image = numbered_image()
    crop = cut_crop(image, (100.0, 80.0, 200.0, 180.0), SEED_PAD30, 64)
    assert crop.shape == (64, 64, 3)
    assert crop.dtype == np.uint8
    np.testing.assert_array_equal(crop, resized(image[50:210, 70:230], 64, 64, cv2.INTER_AREA))  # shrinking


def test_seed_crop_rounds_the_box_outwards() -> None:
    image = numbered_image()
    crop = cut_crop(image, (100.4, 80.6, 199.2, 179.9), pad(0), 100)
    np.testing.assert_array_equal(crop, resized(image[80:180, 100:200], 100, 100, cv2.INTER_AREA))


def test_seed_crop_clamps_at_the_frame_border() -> None:
    image = numbered_image()
    # MTCNN boxes can start outside the frame: the padded box is cut at the edges, then resized.
    crop = cut_crop(image, (-12.0, -5.0, 40.0, 60.0), SEED_PAD30, 32)
    np.testing.assert_array_equal(crop, resized(image[0:90, 0:70], 32, 32, cv2.INTER_AREA))
    crop = cut_crop(image, (380.0, 270.0, 420.0, 310.0), pad(10), 24)
    np.testing.assert_array_equal(crop, resized(image[260:300, 370:400], 24, 24, cv2.INTER_AREA))


def test_seed_small_crop_is_enlarged_smoothly() -> None:
    image = numbered_image()
    crop = cut_crop(image, (50.0, 50.0, 70.0, 70.0), pad(5), 224)
    assert crop.shape == (224, 224, 3)
    np.testing.assert_array_equal(crop, resized(image[45:75, 45:75], 224, 224, cv2.INTER_CUBIC))


def test_seed_crop_is_bicubic_when_only_one_side_is_enlarged() -> None:
    image = numbered_image()
    crop = cut_crop(image, (100.0, 100.0, 200.0, 140.0), pad(0), 64)  # 100 wide, 40 tall
    np.testing.assert_array_equal(crop, resized(image[100:140, 100:200], 64, 64, cv2.INTER_CUBIC))


# --- SBI: box + w/8, h/8, clipped, stretched, bilinear ------------------------------------------------------------


def test_sbi_grows_the_box_by_an_eighth_and_rounds_outwards() -> None:
    image = numbered_image()
    # w 79.6, h 79.7: margins 9.95 and 9.9625; SBI's int(x1 - m) and int(x2 + m) + 1 give the same window.
    crop = cut_crop(image, (100.5, 80.2, 180.1, 159.9), SBI_EIGHTH, 380)
    np.testing.assert_array_equal(crop, resized(image[70:170, 90:191], 380, 380, cv2.INTER_LINEAR))


def test_sbi_clips_at_the_frame_border() -> None:
    image = numbered_image()
    crop = cut_crop(image, (-10.0, 250.0, 60.0, 310.0), SBI_EIGHTH, 128)  # margins 8.75 and 7.5
    np.testing.assert_array_equal(crop, resized(image[242:300, 0:69], 128, 128, cv2.INTER_LINEAR))


# --- DFDC: box + w/3, h/3, clipped, isotropic resize, zero-padded to a centred square ------------------------------


def test_dfdc_keeps_the_aspect_and_pads_above_and_below() -> None:
    image = numbered_image()
    crop = cut_crop(image, (100.0, 100.0, 160.0, 130.0), DFDC_THIRD_PAD, 64)  # window 100 wide x 50 tall
    np.testing.assert_array_equal(crop[:16], 0)
    np.testing.assert_array_equal(crop[48:], 0)
    np.testing.assert_array_equal(crop[16:48], resized(image[90:140, 80:180], 64, 32, cv2.INTER_AREA))


def test_dfdc_pads_left_and_right_with_the_odd_pixel_on_the_right() -> None:
    image = numbered_image()
    crop = cut_crop(image, (200.0, 100.0, 230.0, 160.0), DFDC_THIRD_PAD, 150)  # window 50 wide x 100 tall
    # Scale 1.5: 75 px wide, enlarged, so bicubic; 75 columns of zeros split 37 left, 38 right.
    np.testing.assert_array_equal(crop[:, :37], 0)
    np.testing.assert_array_equal(crop[:, 112:], 0)
    np.testing.assert_array_equal(crop[:, 37:112], resized(image[80:180, 190:240], 75, 150, cv2.INTER_CUBIC))


def test_dfdc_square_window_is_not_padded_and_clips_at_the_border() -> None:
    image = numbered_image()
    crop = cut_crop(image, (15.0, 15.0, 45.0, 45.0), DFDC_THIRD_PAD, 50)  # window 5..55, 50 px: no resize
    np.testing.assert_array_equal(crop, image[5:55, 5:55])
    crop = cut_crop(image, (-30.0, 20.0, 30.0, 80.0), DFDC_THIRD_PAD, 40)  # x from -50 clipped to 0: 50 x 100
    np.testing.assert_array_equal(crop[:, :10], 0)
    np.testing.assert_array_equal(crop[:, 30:], 0)
    np.testing.assert_array_equal(crop[:, 10:30], resized(image[0:100, 0:50], 20, 40, cv2.INTER_AREA))


# --- squares of 1.3 x max(w, h): moved inside the frame (interop, DeepfakeBench) or FF++'s rule -------------------


def test_square_is_centred_on_the_box() -> None:
    image = numbered_image()
    crop = cut_crop(image, (100.0, 100.0, 140.0, 160.0), SQUARE_13, 100)  # side 78 around (120, 130)
    np.testing.assert_array_equal(crop, resized(image[91:169, 81:159], 100, 100, cv2.INTER_AREA))


def test_square_is_shifted_inside_at_each_border() -> None:
    image = numbered_image()
    cases: list[tuple[Box, tuple[int, int, int, int]]] = [
        ((0.0, 100.0, 40.0, 140.0), (0, 94, 52, 146)),  # left: starts at -6
        ((370.0, 10.0, 400.0, 50.0), (348, 4, 400, 56)),  # right: would end at 411
        ((100.0, -20.0, 140.0, 20.0), (94, 0, 146, 52)),  # top
        ((100.0, 270.0, 140.0, 310.0), (94, 248, 146, 300)),  # bottom
    ]
    for box, (left, top, right, bottom) in cases:
        crop = cut_crop(image, box, SQUARE_13, 52)
        np.testing.assert_array_equal(crop, image[top:bottom, left:right])  # 52 px: no resize


def test_square_larger_than_the_frame_is_clipped_where_it_does_not_fit() -> None:
    image = numbered_image()
    crop = cut_crop(image, (150.0, 20.0, 250.0, 280.0), SQUARE_13, 64)  # side 338: fits the width only
    np.testing.assert_array_equal(crop, resized(image[0:300, 31:369], 64, 64, cv2.INTER_AREA))
    crop = cut_crop(image, (10.0, 10.0, 390.0, 290.0), SQUARE_13, 64)  # side 494: the whole frame
    np.testing.assert_array_equal(crop, resized(image, 64, 64, cv2.INTER_AREA))


def test_ffpp_square_moves_at_the_top_left_and_shrinks_at_the_bottom_right() -> None:
    image = numbered_image()
    crop = cut_crop(image, (0.0, 100.0, 40.0, 140.0), FFPP_SQUARE_13, 299)  # side 52 kept, moved from x -6 to 0
    np.testing.assert_array_equal(crop, pil_bilinear(image[94:146, 0:52], 299))
    # Would end at x 411: the square shrinks to 41 px (FF++ keeps it square; "clip" would cut it to 41 x 52).
    crop = cut_crop(image, (370.0, 10.0, 400.0, 50.0), FFPP_SQUARE_13, 299)
    np.testing.assert_array_equal(crop, pil_bilinear(image[4:45, 359:400], 299))
    clipped = cut_crop(image, (370.0, 10.0, 400.0, 50.0), replace(FFPP_SQUARE_13, border="clip"), 299)
    np.testing.assert_array_equal(clipped, pil_bilinear(image[4:56, 359:400], 299))


def test_pil_bilinear_is_what_torchvision_resize_does_to_a_pil_image() -> None:
    from torchvision import transforms

    region = numbered_image()[0:200, 50:250]  # shrinking, where PIL antialiases and OpenCV does not
    ffpp = np.asarray(transforms.Resize((120, 120))(Image.fromarray(region)))
    np.testing.assert_array_equal(pil_bilinear(region, 120), ffpp)
    assert np.abs(resized(region, 120, 120, cv2.INTER_LINEAR).astype(int) - ffpp).max() > 1


# --- errors and the spec --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box", [(500.0, 10.0, 540.0, 50.0), (-50.0, 10.0, 0.0, 50.0), (10.0, -60.0, 50.0, -5.0), (10.0, 300.0, 50.0, 340.0)]
)
@pytest.mark.parametrize("spec", list(CONVENTIONS.values()), ids=list(CONVENTIONS))
def test_box_outside_the_frame_is_an_error(box: Box, spec: CropSpec) -> None:
    with pytest.raises(ValueError, match="outside"):
        cut_crop(numbered_image(), box, spec, 32)


def test_a_square_that_misses_the_frame_is_an_error() -> None:
    tiny = CropSpec("tiny", "square_scale", 0.1, "clip", "stretch", "area")
    with pytest.raises(ValueError, match="outside"):
        cut_crop(numbered_image(), (-100.0, 10.0, 11.0, 50.0), tiny, 32)  # side 11 around x -44.5


def test_spec_validation_and_lookup() -> None:
    with pytest.raises(ValueError, match="square_scale"):
        CropSpec("bad", "pixels", 30, "square", "stretch", "area")
    with pytest.raises(ValueError, match="positive"):
        CropSpec("bad", "square_scale", 0, "shift", "stretch", "area")
    assert crop_convention("square_1.3") is SQUARE_13
    with pytest.raises(ValueError, match="unknown crop convention"):
        crop_convention("nope")


# --- several conventions at once ------------------------------------------------------------------------------------


def test_cut_crops_cuts_each_distinct_convention_and_size_once(monkeypatch: pytest.MonkeyPatch) -> None:
    image = numbered_image()
    faces: list[tuple[np.ndarray, Box]] = [(image, (100.0, 80.0, 200.0, 180.0)), (image, (10.0, 20.0, 60.0, 80.0))]
    calls: list[tuple[str, int]] = []
    cut = crops_module.cut_crop

    def counting(image: np.ndarray, box: Box, spec: CropSpec, size: int) -> np.ndarray:
        calls.append((spec.name, size))
        return cut(image, box, spec, size)

    monkeypatch.setattr(crops_module, "cut_crop", counting)
    wanted = [(SEED_PAD30, 64), (SQUARE_13, 64), (SEED_PAD30, 64), (SEED_PAD30, 32)]
    result = cut_crops(faces, wanted)
    assert set(result) == {("seed_pad30", 64), ("square_1.3", 64), ("seed_pad30", 32)}
    assert len(calls) == 3 * len(faces)
    for (name, size), stack in result.items():
        assert stack.shape == (2, size, size, 3)
        for crop, (img, box) in zip(stack, faces, strict=True):
            np.testing.assert_array_equal(crop, cut(img, box, CONVENTIONS[name], size))
    assert cut_crops([], [(SQUARE_13, 16)])[("square_1.3", 16)].shape == (0, 16, 16, 3)
    with pytest.raises(ValueError, match="named 'seed_pad30'"):
        cut_crops(faces, [(SEED_PAD30, 64), (replace(SEED_PAD30, amount=10), 64)])


def test_pipeline_feeds_each_member_its_own_convention() -> None:
    image = numbered_image()
    frames = [Frame(0, 0.0, image), Frame(5, 0.2, image)]
    boxes: list[Box] = [(100.0, 80.0, 200.0, 180.0), (110.0, 90.0, 210.0, 190.0)]
    detections = [_Detection(0, position, Face(box, 0.99)) for position, box in enumerate(boxes)]

    def member(name: str, spec: CropSpec, size: int) -> Any:
        return SimpleNamespace(
            manifest=SimpleNamespace(name=name),
            detector=SimpleNamespace(crop=spec, input_size=size, normalisation=HALF),
        )

    pack: Any = SimpleNamespace(
        members=[member("a", SEED_PAD30, 64), member("b", SQUARE_13, 64), member("c", SEED_PAD30, 64)]
    )
    crops = member_crops(frames, detections, pack)
    assert set(crops) == {("seed_pad30", 64), ("square_1.3", 64)}
    np.testing.assert_array_equal(crops["square_1.3", 64][1], cut_crop(image, boxes[1], SQUARE_13, 64))
    assert member_preprocessing(pack) == {
        "a": Preprocessing("seed_pad30", 64, "half"),
        "b": Preprocessing("square_1.3", 64, "half"),
        "c": Preprocessing("seed_pad30", 64, "half"),
    }


# --- the interop test crops (../shared/interop/inputs) --------------------------------------------------------------


@pytest.mark.skipif(not (INTEROP / "faces.json").is_file(), reason=f"{INTEROP} is absent (../shared beside the repo)")
@pytest.mark.parametrize("position", range(4))
def test_square_13_reproduces_the_interop_crops(position: int) -> None:
    entry = json.loads((INTEROP / "faces.json").read_text())["crops"][position]
    [frame] = read_frames(shared_file(f"videos/{entry['clip']}"), [entry["frame"]])
    assert list(frame.image.shape[:2]) == entry["frame_size_hw"]
    box = tuple(entry["mtcnn_box_xyxy"])
    x, y, side, _ = entry["square_xywh"]
    # The same window, exactly: the square at its full size reproduces it without any resize.
    np.testing.assert_array_equal(cut_crop(frame.image, box, SQUARE_13, side), frame.image[y : y + side, x : x + side])
    for size in INTEROP_SIZES:
        expected = np.load(INTEROP / f"faces_{size}.npy")[position]
        crop = cut_crop(frame.image, box, SQUARE_13, size)
        diff = np.abs(crop.astype(int) - expected)
        # Equal with this checkout's PyAV; another FFmpeg build may decode a few pixel values 1 apart.
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (size, int(diff.max()))
