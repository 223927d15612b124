"""Verity's own formats (DESIGN §6): full-size parameter counts, the test pack, strict loading, Effort's SVD form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

from core.manifest import read_manifest
from models.checkpoint import CheckpointError, read_state_dict
from models.effort_clip import EffortClip, decompose_svd_weights, fold_svd_weights
from models.formats import formats, get_format
from models.integrity import sha256_file
from models.loading import build, load_weights
from models.pack import LoadedPack, load_pack
from models.testpack import TEST_PACK_NAME, TINY_MEMBERS, TinyMember, write_test_pack

# The seed's own counts (DESIGN §6), which match timm exactly; effort_clip is CLIP ViT-L/14's vision tower
# (303,179,776) plus Linear(1024, 2). The public formats: F3Net adds 9 input channels to Xception's conv1
# (32 * 9 * 3 * 3 = 2,592) and four learnable 256 x 256 band masks; the DFDC B7 has one logit.
FULL_SIZE_PARAMS = {
    "xception": 20_811_050,
    "efficientnet_b4": 17_552_202,
    "hybrid": 97_894_209,
    "effort_clip": 303_179_776 + 2_050,
    "meso4": 27_977,
    "mesoinception4": 28_615,
    "deepfakebench_xception": 20_811_050,
    "deepfakebench_f3net": 20_811_050 + 2_592 + 4 * 256 * 256,
    "deepfakebench_effort": 303_179_776 + 2_050,
    "ffpp_xception": 20_811_050,
}
OWN_FORMATS = {"xception", "efficientnet_b4", "hybrid", "effort_clip", "meso4", "mesoinception4"}


def build_full_size_on_meta(format_name: str) -> torch.nn.Module:
    """Shapes without memory: counting ViT-L/14's 303M parameters this way takes milliseconds."""
    fmt = get_format(format_name)
    with torch.device("meta"):
        return fmt.build_model(fmt.input_size, {})


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("format_name", sorted(FULL_SIZE_PARAMS))
def test_full_size_parameter_counts(format_name: str) -> None:
    assert n_params(build_full_size_on_meta(format_name)) == FULL_SIZE_PARAMS[format_name]


def test_every_own_format_is_counted_and_in_the_test_pack() -> None:
    assert set(formats()) >= OWN_FORMATS
    assert {m.format for m in TINY_MEMBERS} == OWN_FORMATS
    assert round(FULL_SIZE_PARAMS["effort_clip"] / 1e6) == 303


def test_builders_match_timm_layouts() -> None:
    with torch.device("meta"):
        reference = {
            "efficientnet_b4": timm.create_model("efficientnet_b4", pretrained=False, num_classes=2),
            "xception": timm.create_model("legacy_xception", pretrained=False, num_classes=2),
        }
    for name, timm_model in reference.items():
        ours = build_full_size_on_meta(name).state_dict()
        assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in timm_model.state_dict().items()}


# --- the test pack --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def test_pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_pack(tmp_path_factory.mktemp("pack"))


@pytest.fixture(scope="module")
def loaded(test_pack: Path) -> LoadedPack:
    return load_pack(test_pack)


def test_test_pack_manifest(test_pack: Path) -> None:
    manifest = read_manifest(test_pack)
    assert manifest.test_pack and "TEST-ONLY random weights" in manifest.name == TEST_PACK_NAME
    for member in manifest.members:
        assert sha256_file(test_pack.parent / member.checkpoint) == member.sha256


def test_every_architecture_loads_strictly_and_predicts(loaded: LoadedPack) -> None:
    assert loaded.failed == {}
    assert {m.manifest.format for m in loaded.members} == OWN_FORMATS
    rng = np.random.default_rng(0)
    for member in loaded.members:
        size = member.detector.input_size
        scores = member.detector.predict(rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8))
        assert scores.shape == (3,) and scores.dtype == np.float64, member.manifest.name
        assert np.all((scores >= 0) & (scores <= 1)), member.manifest.name


# MesoNet is read from Keras HDF5 files: tests/models/test_models_mesonet.py.
@pytest.mark.parametrize(
    "member", [m for m in TINY_MEMBERS if not get_format(m.format).load_weights], ids=lambda m: m.format
)
def test_checkpoint_variants(member: TinyMember, test_pack: Path, tmp_path: Path) -> None:
    manifest = next(m for m in read_manifest(test_pack).members if m.format == member.format)
    fmt = get_format(manifest.format)
    state = read_state_dict(test_pack.parent / manifest.checkpoint)

    def load(obj: object) -> torch.nn.Module:
        torch.save(obj, tmp_path / "variant.pt")
        model = build(fmt, manifest.input_size, manifest.options)
        load_weights(fmt, model, tmp_path / "variant.pt")
        return model

    reference = load(state).state_dict()
    for variant in ({"state_dict": state, "epoch": 7}, {f"module.{k}": v for k, v in state.items()}):
        loaded_state = load(variant).state_dict()
        assert all(torch.equal(loaded_state[k], reference[k]) for k in reference)

    renamed = dict(state)
    victim = next(k for k in state if k.endswith(("weight", "weight_main")))
    renamed[victim + "_renamed"] = renamed.pop(victim)
    with pytest.raises(CheckpointError, match=f"{victim}_renamed"):
        load(renamed)


# --- Effort's SVD-decomposed checkpoints ----------------------------------------------------------------


def tiny_effort() -> EffortClip:
    torch.manual_seed(0)
    return EffortClip(
        input_size=28, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    ).eval()


def test_svd_form_folds_back_to_the_same_network(tmp_path: Path) -> None:
    model = tiny_effort()
    plain = model.state_dict()
    svd = decompose_svd_weights(plain, rank_drop=3)
    assert "backbone.encoder.layers.0.self_attn.q_proj.U_residual" in svd
    assert svd["backbone.encoder.layers.0.self_attn.q_proj.V_residual"].shape == (3, 16)  # Effort's Vh rows
    folded = fold_svd_weights(svd)
    assert folded.keys() == plain.keys()
    for key in plain:
        torch.testing.assert_close(folded[key], plain[key], atol=1e-5, rtol=1e-5)

    # Effort's checkpoints also carry the (always 0..n-1) position_ids older transformers persisted.
    svd["backbone.embeddings.position_ids"] = torch.arange(5).unsqueeze(0)
    torch.save(svd, tmp_path / "effort.pth")
    reloaded = tiny_effort()
    torch.nn.init.zeros_(reloaded.head.weight)
    load_weights(get_format("effort_clip"), reloaded, tmp_path / "effort.pth")
    x = torch.randn(2, 3, 28, 28)
    with torch.inference_mode():
        torch.testing.assert_close(reloaded(x), model(x), atol=1e-4, rtol=1e-4)


def test_svd_main_factors_without_weight_main_are_composed() -> None:
    plain = tiny_effort().state_dict()
    svd = decompose_svd_weights(plain, rank_drop=1)
    for key in [k for k in svd if k.endswith(".weight_main")]:
        del svd[key]
    folded = fold_svd_weights(svd)
    key = "backbone.encoder.layers.0.self_attn.out_proj.weight"
    torch.testing.assert_close(folded[key], plain[key], atol=1e-5, rtol=1e-5)


def test_incomplete_svd_factors_are_named() -> None:
    svd = decompose_svd_weights(tiny_effort().state_dict())
    del svd["backbone.encoder.layers.0.self_attn.k_proj.S_residual"]
    with pytest.raises(CheckpointError, match=r"self_attn\.k_proj: incomplete SVD factors"):
        fold_svd_weights(svd)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_autocast_matches_cpu(test_pack: Path) -> None:
    cpu, cuda = load_pack(test_pack), load_pack(test_pack, device="cuda")
    rng = np.random.default_rng(1)
    for a, b in zip(cpu.members, cuda.members, strict=True):
        size = a.detector.input_size
        crops = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
        np.testing.assert_allclose(b.detector.predict(crops), a.detector.predict(crops), atol=2e-2)
