"""Pack manifests, strict checkpoint loading, the detector contract and load_pack on the default pack."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from core.manifest import ManifestError, parse_manifest, read_manifest
from core.preprocessing import Normalisation
from models.checkpoint import CheckpointError, load_checkpoint
from models.detector import OutputSemantics, TorchDetector
from models.formats import UnknownFormatError, formats, get_format
from models.integrity import sha256_file
from models.mesonet import Meso4
from models.pack import PackLoadError, load_pack

REPO = Path(__file__).resolve().parents[2]
MESONET = REPO / ".." / "shared" / "testdata" / "weights" / "mesonet"
DEFAULT_PACK = REPO / "models" / "packs" / "default.yaml"
needs_mesonet = pytest.mark.skipif(
    not (MESONET / "Meso4_DF.h5").is_file(), reason=f"MesoNet weights not found in {MESONET.resolve()}"
)


def default_pack_doc() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(DEFAULT_PACK.read_text())
    return doc


def write_pack(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "pack.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


# --- manifest -------------------------------------------------------------------------------------------


def test_default_manifest_reads() -> None:
    pack = read_manifest(DEFAULT_PACK)
    assert [m.name for m in pack.members] == ["meso4_df", "mesoinception_df"]
    assert {m.aggregator for m in pack.members} == {"confident"}
    assert pack.fusion.method == "weighted_average"
    assert (pack.fusion.t_low, pack.fusion.t_high, pack.fusion.min_models) == (0.35, 0.65, 1)
    assert not pack.test_pack


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["members"][0].pop("sha256"), r"members\[0\] \(meso4_df\): missing required field 'sha256'"),
        (lambda d: d["members"][0].update(sha256="abc"), "sha256: expected 64 lowercase hex"),
        (lambda d: d["members"][0].update(aggregator="topk"), "aggregator: expected"),
        (lambda d: d["members"][0].update(checkpoint="../x.h5"), "must be a path inside the weights dir"),
        (lambda d: d["members"][1].update(name="meso4_df"), "duplicate member names"),
        (lambda d: d["members"][0].update(input_size=True), "input_size: expected int"),
        (lambda d: d["members"][0].update(colour="red"), r"unknown field\(s\) \['colour'\]"),
        (lambda d: d["fusion"].update(method="vote"), "fusion.method"),
        (lambda d: d["fusion"].update(t_low=0.9), "t_low <= t_high"),
        (lambda d: d["fusion"].update(min_models=3), "min_models: must be between 1 and 2"),
        (lambda d: d.update(members=[]), "at least one member"),
        (lambda d: d["members"][0].update(architecture="meso4"), "give exactly one of 'format'"),
        (lambda d: d["members"][0].update(crop="tight"), "unknown crop convention 'tight'"),
        (lambda d: d["members"][0].update(normalisation="imagenette"), "unknown normalisation 'imagenette'"),
        (lambda d: d["members"][0].update(normalisation={"mean": [0.5], "std": [0.5]}), "3 means and 3 positive"),
        (lambda d: d["members"][0].update(check={"logits": [], "tolerance": 0.001}), "check.logits: expected"),
        (lambda d: d["members"][0].update(check={"logits": [[1.0]], "tolerance": 2}), "tolerance: must be in"),
    ],
)
def test_invalid_manifests_are_rejected_with_the_field(edit: Any, message: str) -> None:
    doc = default_pack_doc()
    edit(doc)
    with pytest.raises(ManifestError, match=message):
        parse_manifest(doc)


def test_valid_aggregators_parse() -> None:
    doc = default_pack_doc()
    for aggregator in ("mean", "max", "topk:4", "softmax:5", "softmax:2.5", "confident"):
        doc["members"][0]["aggregator"] = aggregator
        assert parse_manifest(doc).members[0].aggregator == aggregator


def test_unreadable_manifest_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("members: [")
    with pytest.raises(ManifestError, match=r"bad\.yaml"):
        read_manifest(path)


# --- checkpoints ----------------------------------------------------------------------------------------


def meso4_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return Meso4().state_dict()


def test_checkpoint_wrappers_and_prefixes_load(tmp_path: Path) -> None:
    state = meso4_state()
    variants: dict[str, object] = {
        "plain": state,
        "state_dict": {"state_dict": state, "epoch": 3},
        "model": {"model": {f"module.{k}": v for k, v in state.items()}},
        "backbone": {f"backbone.{k}": v for k, v in state.items()},
    }
    for name, obj in variants.items():
        torch.save(obj, tmp_path / f"{name}.pt")
        model = Meso4()
        load_checkpoint(model, tmp_path / f"{name}.pt")
        assert torch.equal(model.head.fc2.weight, state["head.fc2.weight"]), name


def test_renamed_key_is_named(tmp_path: Path) -> None:
    state = meso4_state()
    state["head.fc2.kernel"] = state.pop("head.fc2.weight")
    torch.save(state, tmp_path / "renamed.pt")
    with pytest.raises(CheckpointError, match=r"missing keys: head\.fc2\.weight.*unexpected keys: head\.fc2\.kernel"):
        load_checkpoint(Meso4(), tmp_path / "renamed.pt")


def test_wrong_shape_is_named(tmp_path: Path) -> None:
    state = meso4_state()
    state["head.fc2.bias"] = torch.zeros(2)
    torch.save(state, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match=r"head\.fc2\.bias \(2,\) != \(1,\)"):
        load_checkpoint(Meso4(), tmp_path / "shape.pt")


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": meso4_state(), "cfg": object()}, tmp_path / "pickle.pt")
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint pickle\.pt"):
        load_checkpoint(Meso4(), tmp_path / "pickle.pt")


# --- detector contract ----------------------------------------------------------------------------------


class ConstantLogits(torch.nn.Module):
    def __init__(self, logits: list[float]) -> None:
        super().__init__()
        self.logits = torch.tensor(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(x.shape[0], -1)


@pytest.mark.parametrize(
    ("logits", "output", "expected"),
    [
        ([2.0], OutputSemantics("sigmoid_real"), 1 / (1 + np.exp(2.0))),
        ([2.0], OutputSemantics("sigmoid_fake"), 1 / (1 + np.exp(-2.0))),
        ([0.0, np.log(3.0)], OutputSemantics("softmax", fake_index=1), 0.75),
        ([0.0, np.log(3.0)], OutputSemantics("softmax", fake_index=0), 0.25),
    ],
)
def test_output_semantics(logits: list[float], output: OutputSemantics, expected: float) -> None:
    detector = TorchDetector("c", ConstantLogits(logits), 8, Normalisation(), output, batch_size=2)
    scores = detector.predict(np.zeros((5, 8, 8, 3), np.uint8))
    assert scores.dtype == np.float64 and scores.shape == (5,)
    np.testing.assert_allclose(scores, expected, rtol=1e-6)


def test_predict_batches_normalises_and_rejects_wrong_input() -> None:
    seen: list[torch.Tensor] = []

    class Spy(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.zeros(x.shape[0], 1)

    norm = Normalisation(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    detector = TorchDetector("spy", Spy(), 4, norm, OutputSemantics("sigmoid_fake"), batch_size=2)
    crops = np.full((5, 4, 4, 3), 255, np.uint8)
    crops[:, :, :, 1] = 0
    assert detector.predict(crops).shape == (5,)
    assert [len(x) for x in seen] == [2, 2, 1]
    assert seen[0].shape == (2, 3, 4, 4)  # NHWC uint8 in, NCHW float out
    assert torch.equal(seen[0][:, 0], torch.ones(2, 4, 4)) and torch.equal(seen[0][:, 1], -torch.ones(2, 4, 4))
    assert detector.predict(np.zeros((0, 4, 4, 3), np.uint8)).shape == (0,)
    for bad in (np.zeros((2, 5, 5, 3), np.uint8), np.zeros((2, 4, 4, 3), np.float32), np.zeros((4, 4, 3))):
        with pytest.raises(ValueError, match="expected uint8 crops of shape"):
            detector.predict(bad)


# --- registry and load_pack -----------------------------------------------------------------------------


def test_registry_knows_mesonet_and_names_unknowns() -> None:
    assert {"meso4", "mesoinception4"} <= set(formats())
    assert get_format("meso4").output == OutputSemantics("sigmoid_real")
    with pytest.raises(UnknownFormatError, match="unknown format 'resnet9000'"):
        get_format("resnet9000")


@needs_mesonet
def test_default_pack_loads_and_predicts() -> None:
    pack = load_pack(DEFAULT_PACK)
    assert pack.failed == {}
    assert [m.detector.name for m in pack.members] == ["meso4_df", "mesoinception_df"]
    assert set(pack.load_seconds) == {"meso4_df", "mesoinception_df"}
    crops = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
    for member in pack.members:
        assert member.detector.input_size == 256
        scores = member.detector.predict(crops)
        assert scores.shape == (3,) and np.all((scores >= 0) & (scores <= 1))


@needs_mesonet
def test_weights_dir_env_var_overrides_the_manifest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shutil.copy(MESONET / "Meso4_DF.h5", tmp_path / "Meso4_DF.h5")
    monkeypatch.setenv("VERITY_WEIGHTS_DIR", str(tmp_path))
    pack = load_pack(DEFAULT_PACK)
    assert [m.manifest.name for m in pack.members] == ["meso4_df"]
    assert "mesoinception_df" in pack.failed and "not found" in pack.failed["mesoinception_df"]


@needs_mesonet
def test_sha_mismatch_names_file_and_both_hashes(tmp_path: Path) -> None:
    doc = default_pack_doc()
    doc["weights_dir"] = str(MESONET.resolve())
    wrong = "0" * 64
    doc["members"][0]["sha256"] = wrong
    pack = load_pack(write_pack(tmp_path, doc))
    reason = pack.failed["meso4_df"]
    assert "Meso4_DF.h5" in reason and wrong in reason and sha256_file(MESONET / "Meso4_DF.h5") in reason
    assert [m.manifest.name for m in pack.members] == ["mesoinception_df"]


@needs_mesonet
def test_pack_with_no_loadable_member_raises(tmp_path: Path) -> None:
    doc = default_pack_doc()
    for member in doc["members"]:
        member["format"] = "nope"
    with pytest.raises(PackLoadError, match="unknown format 'nope'"):
        load_pack(write_pack(tmp_path, doc), weights_dir=MESONET)
