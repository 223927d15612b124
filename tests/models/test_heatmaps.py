"""Heatmaps (workers/explain): Grad-CAM finds a planted region on a toy CNN that decides on it alone, every test-pack
architecture gets maps of its crop's shape (the CLIP ViT through its patch tokens), the PNGs, and a job's explain
step: the worst track's top crops per member, stored under the job's prefix, a member it cannot explain reported."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from core.manifest import FusionManifest, MemberManifest, PackManifest
from core.media.decode import Frame
from core.preprocessing import UNIT
from core.results import JobResult, Tracks
from core.storage import LocalFolderStore
from core.vocabulary import Verdict
from models.detector import OutputSemantics, TorchDetector
from models.formats import get_format
from models.pack import LoadedMember, LoadedPack
from models.testpack import TINY_MEMBERS, TinyMember
from workers.explain import targets
from workers.explain.cam import FakeLogOdds, member_cams
from workers.explain.heatmaps import explain
from workers.explain.overlay import GAP, LEGEND, PANEL, overlay_png
from workers.media.faces import Face
from workers.pipeline import PipelineOutput, ScoredCrops, _Detection

SIZE = 64
PATCH = 16


class RednessNet(nn.Module):
    """Its evidence is red pixels: a fixed 1x1 conv measures R - (G + B) / 2, a 3x3 conv spreads it, global
    pooling sums it. On grey noise with one red square, the decision depends on that square and nothing else."""

    def __init__(self, output: OutputSemantics) -> None:
        super().__init__()
        redness = nn.Conv2d(3, 1, 1)
        spread = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        assert redness.bias is not None
        with torch.no_grad():
            redness.weight.copy_(torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1))
            redness.bias.fill_(-0.2)  # grey noise stays below it
            spread.weight.fill_(1.0 / 9)
        self.features = nn.Sequential(redness, nn.ReLU(), spread, nn.ReLU())
        outputs = 2 if output.kind == "softmax" else 1
        self.head = nn.Linear(4, outputs)
        with torch.no_grad():
            # More red, more FAKE, in each output convention.
            sign = {"softmax": torch.tensor([[-1.0], [1.0]]), "sigmoid_fake": torch.ones(1, 1)}
            self.head.weight.copy_(sign.get(output.kind, -torch.ones(1, 1)).expand(outputs, 4) * 20)
            self.head.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.head(self.features(x).mean(dim=(2, 3)))
        return logits


def planted(corners: list[tuple[int, int]], seed: int = 0) -> np.ndarray:
    """Grey noise crops, each with a red PATCH x PATCH square at its (top, left)."""
    rng = np.random.default_rng(seed)
    grey = rng.integers(90, 140, (len(corners), SIZE, SIZE, 1), dtype=np.uint8)
    crops = np.repeat(grey, 3, axis=3)
    for crop, (top, left) in zip(crops, corners, strict=True):
        crop[top : top + PATCH, left : left + PATCH] = (230, 30, 30)
    return crops


@pytest.fixture
def toy_target(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"{RednessNet.__module__}.{RednessNet.__qualname__}"
    monkeypatch.setitem(targets.TARGETS, name, targets.CamTarget("gradcam", "features.-1"))


@pytest.mark.parametrize("kind", ["softmax", "sigmoid_fake", "sigmoid_real"])
def test_gradcam_highlights_the_planted_region(toy_target: None, kind: str) -> None:
    output = OutputSemantics(kind)  # type: ignore[arg-type]  # each of the Literal's values
    detector = TorchDetector("toy", RednessNet(output), SIZE, UNIT, output)
    corners = [(4, 6), (40, 30), (20, 44)]
    crops = planted(corners)
    assert (detector.predict(crops) > 0.9).all()  # the planted squares make it say FAKE
    cams = member_cams(detector, crops)
    assert cams.method == "gradcam" and cams.maps.shape == (3, SIZE, SIZE)
    for cam, (top, left) in zip(cams.maps, corners, strict=True):
        inside = np.zeros((SIZE, SIZE), bool)
        inside[max(0, top - 2) : top + PATCH + 2, max(0, left - 2) : left + PATCH + 2] = True
        peak = np.unravel_index(int(np.argmax(cam)), cam.shape)
        assert inside[peak], (peak, top, left)
        assert cam[inside].sum() > 0.9 * cam.sum()
        assert cam[~inside].max() < 0.1


def test_the_fake_target_is_the_log_odds_of_fake() -> None:
    logits = torch.tensor([0.3, -1.2, 2.0])
    p = torch.softmax(logits, 0)[2]
    assert FakeLogOdds(OutputSemantics("softmax", fake_index=2))(logits).item() == pytest.approx(
        torch.log(p / (1 - p)).item(), abs=1e-5
    )
    assert FakeLogOdds(OutputSemantics("sigmoid_real"))(torch.tensor([1.5])).item() == pytest.approx(-1.5)


def test_an_unknown_architecture_has_no_target() -> None:
    with pytest.raises(targets.NoTarget, match="RednessNet"):
        targets.cam_target(RednessNet(OutputSemantics("softmax")))


def test_patch_tokens_make_the_image_grid() -> None:
    tokens = torch.arange(2 * 17 * 3, dtype=torch.float32).view(2, 17, 3)
    grid = targets.patch_grid(tokens)
    assert grid.shape == (2, 3, 4, 4)
    assert torch.equal(grid[1, :, 0, 1], tokens[1, 2])  # patch 1 (row 0, column 1) follows the class token
    with pytest.raises(ValueError, match="square"):
        targets.patch_grid(tokens[:, :16])


@pytest.mark.parametrize("member", TINY_MEMBERS, ids=lambda m: m.format)
def test_every_test_pack_architecture_gets_maps_of_its_crop(member: TinyMember) -> None:
    fmt = get_format(member.format)
    torch.manual_seed(0)
    model = fmt.build_model(member.input_size, member.options)
    detector = TorchDetector(member.format, model, member.input_size, fmt.normalisation, fmt.output)
    crops = np.random.default_rng(1).integers(0, 256, (2, member.input_size, member.input_size, 3), dtype=np.uint8)
    cams = member_cams(detector, crops)
    assert cams.maps.shape == (2, member.input_size, member.input_size) and cams.maps.dtype == np.float32
    assert cams.maps.min() >= 0.0 and cams.maps.max() <= 1.0
    expected = {"effort_clip": "gradcam_vit", "hybrid": "gradcam_cnn_branch"}.get(member.format, "gradcam")
    assert cams.method == expected
    # The weights are left as they were: trainable, with no gradient buffers filled.
    assert all(p.requires_grad and p.grad is None for p in model.parameters())


def test_the_png_shows_the_crop_beside_its_overlay() -> None:
    crop = planted([(10, 10)])[0]
    cam = np.zeros((SIZE, SIZE), np.float32)
    cam[10:26, 10:26] = 1.0
    image = Image.open(io.BytesIO(overlay_png(crop, cam)))
    assert image.format == "PNG" and image.size == (2 * PANEL + GAP, PANEL + LEGEND)
    pixels = np.asarray(image.convert("RGB")).astype(int)
    scale = PANEL / SIZE
    hot = pixels[int(18 * scale), PANEL + GAP + int(18 * scale)]
    cold = pixels[int(50 * scale), PANEL + GAP + int(50 * scale)]
    assert hot[0] > hot[2] and cold[2] > cold[0]  # JET: red where the map is high, blue where it is low
    with pytest.raises(ValueError, match="does not match"):
        overlay_png(crop, cam[:10])


def _scored_job(detector: TorchDetector, unexplained: TorchDetector) -> tuple[PipelineOutput, LoadedPack]:
    """Two tracks, five detections; track 1 is the worst. Both members saw the same crops."""
    crops = planted([(4, 4), (8, 8), (30, 30), (12, 40), (40, 12)])
    tracks = [0, 1, 1, 0, 1]
    frames = [Frame(10 * i, 0.4 * i, np.zeros((SIZE, SIZE, 3), np.uint8)) for i in range(5)]
    detections = [_Detection(t, i, Face((0.0, 0.0, 8.0, 8.0), 0.99)) for i, t in enumerate(tracks)]
    scores = {"toy": np.array([0.99, 0.5, 0.8, 0.95, 0.7]), "mystery": np.array([0.1, 0.6, 0.2, 0.3, 0.9])}
    key = (detector.crop.name, SIZE)
    result = JobResult(Verdict.FAKE, 0.9, 0.9, "weighted_average", 0.35, 0.65, 5, 5, Tracks(5, None, 1))
    output = PipelineOutput(result, [], frames, [], ScoredCrops(detections, {key: crops}, scores))
    members = [
        LoadedMember(MemberManifest(name, "toy", f"{name}.pt", None, SIZE, "mean", 1.0), d)
        for name, d in (("toy", detector), ("mystery", unexplained))
    ]
    fusion = FusionManifest("weighted_average", 0.35, 0.65, 1)
    manifest = PackManifest("toy", "1", True, "two members", None, tuple(m.manifest for m in members), fusion)
    return output, LoadedPack(manifest, members, {}, {})


def test_a_job_is_explained_on_its_worst_tracks_top_crops(toy_target: None, tmp_path: Path) -> None:
    output = OutputSemantics("softmax")
    detector = TorchDetector("toy", RednessNet(output), SIZE, UNIT, output)
    unexplained = TorchDetector("mystery", nn.Sequential(nn.Flatten(), nn.LazyLinear(2)), SIZE, UNIT, output)
    job, pack = _scored_job(detector, unexplained)
    store = LocalFolderStore(tmp_path)

    result = explain(job, pack, 2, store, "heatmaps/job-1")

    made = [(h.member, h.frame_index, h.track_id, h.score, h.key) for h in result.heatmaps]
    assert made == [
        ("toy", 20, 1, 0.8, "heatmaps/job-1/0.png"),
        ("toy", 40, 1, 0.7, "heatmaps/job-1/1.png"),
        ("mystery", 40, 1, 0.9, None),
        ("mystery", 10, 1, 0.6, None),
    ]
    assert all(h.method == "gradcam" and h.error is None for h in result.heatmaps[:2])
    assert all(h.method is None and "Sequential" in (h.error or "") for h in result.heatmaps[2:])
    for n in (0, 1):
        assert Image.open(tmp_path / "heatmaps" / "job-1" / f"{n}.png").format == "PNG"
    assert result.heatmaps[0].timestamp_s == pytest.approx(0.8)
    assert result.timings["explain"] > 0
    assert JobResult.from_columns(result.columns()).heatmaps == result.heatmaps
