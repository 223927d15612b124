"""Every public checkpoint format against the shared interop vectors: the release's own container and key layout
goes through the member's format (safe read, adapter, strict load, identity check) and Verity computes the
logits and P(fake) the original model's own code computes on the same crops, to 1e-4."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from core.manifest import MemberManifest, read_manifest
from models.detector import TorchDetector
from models.formats import get_format
from models.integrity import sha256_file
from models.loading import IdentityError, WrongFormatError, check_identity, identity_problems
from models.pack import load_member, load_pack
from tests.conftest import REPO
from tests.support.interop import INTEROP, VECTORS, Vector, expected_or_skip, generator

SEED_PACK = REPO / "models" / "packs" / "seed-deepfakebench.yaml"
DFDC_PACK = REPO / "models" / "packs" / "dfdc-winner.yaml"

VectorFactory = Callable[[str], Vector]


def member(vector: Vector, format_name: str | None = None) -> MemberManifest:
    return MemberManifest(
        name=vector.stem,
        format=format_name or vector.format,
        checkpoint=vector.checkpoint.name,
        sha256=sha256_file(vector.checkpoint),
        input_size=None,
        aggregator="mean",
        weight=1.0,
        options=vector.options,
    )


def loaded(vector: Vector) -> TorchDetector:
    return load_member(member(vector), vector.checkpoint.parent, device="cpu", batch_size=8)


@pytest.mark.parametrize("stem", sorted(VECTORS))
def test_interop_format_reproduces_the_original_logits(stem: str, interop_vector: VectorFactory) -> None:
    vector = interop_vector(stem)
    exp = vector.expected
    detector = loaded(vector)
    fmt = get_format(vector.format)
    # The format carries the release's preprocessing: size, normalisation and output semantics.
    assert detector.input_size == exp["input"]["size"]
    assert fmt.normalisation.mean == pytest.approx(exp["input"]["mean"])
    assert fmt.normalisation.std == pytest.approx(exp["input"]["std"])
    crops = vector.crops()
    x = torch.from_numpy(crops).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(exp["input"]["mean"]).view(1, 3, 1, 1)) / torch.tensor(exp["input"]["std"]).view(1, 3, 1, 1)
    with torch.inference_mode():
        logits = detector.model(x).numpy()
    reference = np.asarray(exp["logits"], dtype=np.float64).reshape(logits.shape)
    assert np.abs(logits - reference).max() <= exp["tolerance"]["max_abs_logit_diff"]
    # And through the detector contract: uint8 crops in, P(fake) out, with the format's own normalisation.
    assert np.abs(detector.predict(crops) - np.asarray(exp["p_fake"])).max() <= 1e-4


def test_interop_full_size_effort_layout_loads_by_key_and_shape() -> None:
    """The 1.2 GB full Effort file is not generated in CI: its layout (681 keys) is adapted on meta tensors and
    must match the full-size network key for key and shape for shape."""
    layout = json.loads((INTEROP / "layouts" / "deepfakebench_effort.json").read_text())
    expected_or_skip("deepfakebench_effort")
    fmt = get_format("deepfakebench_effort")
    state = {key: torch.empty(shape, device="meta") for key, shape, _ in layout["state_dict"]["tensors"]}
    assert len(state) == 681
    adapted = fmt.adapt(state)
    with torch.device("meta"):
        model = fmt.build_model(224, {})
    reference = model.state_dict()
    assert adapted.keys() == reference.keys()
    assert all(adapted[k].shape == reference[k].shape for k in reference)


def test_interop_sbi_checkpoint_is_refused_by_the_pytorch_style_b4(interop_vector: VectorFactory) -> None:
    vector = interop_vector("sbi_efficientnetb4")
    with pytest.raises(WrongFormatError, match=r"sbi_efficientnetb4 checkpoint .* not efficientnet_b4"):
        load_member(member(vector, "efficientnet_b4"), vector.checkpoint.parent, "cpu", 8)


def test_interop_sbi_weights_in_the_pytorch_style_network_fail_the_identity_check() -> None:
    """Renamed, SBI's keys fit timm's PyTorch-style efficientnet_b4 exactly; the identity check is what refuses
    that network for the TF-style release (padding and BatchNorm epsilon)."""
    lookalike = get_format("efficientnet_b4").build_model(380, {})
    problems = identity_problems(lookalike, get_format("sbi_efficientnetb4").identity)
    assert any("eps 0.001" in p for p in problems) and any("not TF 'same'" in p for p in problems)
    with pytest.raises(IdentityError, match="not the variant its release needs"):
        check_identity(get_format("sbi_efficientnetb4"), lookalike)
    # The right network passes.
    check_identity(get_format("sbi_efficientnetb4"), get_format("sbi_efficientnetb4").build_model(380, {}))


@pytest.mark.parametrize(
    "format_name",
    [
        "xception",
        "efficientnet_b4",
        "effort_clip",
        "hybrid",
        "deepfakebench_xception",
        "deepfakebench_efficientnetb4",
        "deepfakebench_effort",
        "ffpp_xception",
        "dfdc_tf_efficientnet_b7",
        "sbi_efficientnetb4",
    ],
)
def test_interop_f3net_checkpoint_loads_only_as_f3net(format_name: str, interop_vector: VectorFactory) -> None:
    vector = interop_vector("deepfakebench_f3net")
    with pytest.raises(WrongFormatError, match=f"deepfakebench_f3net checkpoint .* not {format_name}"):
        load_member(member(vector, format_name), vector.checkpoint.parent, "cpu", 8)


def test_interop_f3net_with_other_dct_constants_is_refused(interop_vector: VectorFactory, tmp_path: Path) -> None:
    vector = interop_vector("deepfakebench_f3net")
    state = torch.load(vector.checkpoint, weights_only=True)
    state["FAD_head.filters.1.base"] = torch.ones_like(state["FAD_head.filters.1.base"])
    torch.save(state, tmp_path / "f3net_other_bands.pth")
    changed = Vector(vector.stem, vector.format, {}, vector.expected, tmp_path / "f3net_other_bands.pth")
    with pytest.raises(Exception, match="differs from F3Net's fixed 256-point DCT band values"):
        loaded(changed)


def _release_folder(tmp_path: Path, files: dict[str, Path]) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    for name, source in files.items():
        os.link(source, folder / name)  # the operator's copies, under the release names the packs expect
    return folder


def test_interop_shipped_seed_pack_loads_from_the_release_files(
    interop_vector: VectorFactory, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """models/packs/seed-deepfakebench.yaml as shipped: the four DeepfakeBench files in VERITY_WEIGHTS_DIR are
    all it needs (the full 1.2 GB Effort file included)."""
    effort = tmp_path / "effort_full.pth"
    generator().make("deepfakebench_effort", effort)
    folder = _release_folder(
        tmp_path,
        {
            "xception_best.pth": interop_vector("deepfakebench_xception").checkpoint,
            "effnb4_best.pth": interop_vector("deepfakebench_efficientnetb4").checkpoint,
            "f3net_best.pth": interop_vector("deepfakebench_f3net").checkpoint,
            "effort_clip_L14_trainOn_FaceForensic.pth": effort,
        },
    )
    caplog.set_level(logging.WARNING, logger="models.pack")
    pack = load_pack(SEED_PACK, weights_dir=folder)
    assert pack.failed == {}
    assert [(m.manifest.name, m.detector.input_size, m.detector.crop.name) for m in pack.members] == [
        ("xception", 256, "square_1.3"),
        ("efficientnetb4", 256, "square_1.3"),
        ("f3net", 256, "square_1.3"),
        ("effort", 224, "square_1.3"),
    ]
    # Nothing pins the public files' bytes in advance: each load says which sha256 it trusted.
    assert sum("pins no sha256" in r.getMessage() for r in caplog.records) == 4
    effort_detector = pack.members[3].detector
    assert isinstance(effort_detector, TorchDetector)
    assert effort_detector.normalisation == get_format("deepfakebench_effort").normalisation


def test_interop_shipped_dfdc_pack_loads_seven_b7s(interop_vector: VectorFactory, tmp_path: Path) -> None:
    b7 = interop_vector("dfdc_tf_efficientnet_b7").checkpoint
    names = [m.checkpoint for m in read_manifest(DFDC_PACK).members]
    pack = load_pack(DFDC_PACK, weights_dir=_release_folder(tmp_path, dict.fromkeys(names, b7)))
    assert pack.failed == {} and len(pack.members) == 7
    assert {m.manifest.aggregator for m in pack.members} == {"confident"}
    assert {(m.detector.input_size, m.detector.crop.name) for m in pack.members} == {(380, "dfdc_third_pad")}
