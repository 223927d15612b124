"""`verity-pack import / check / convert-pickle` on generated checkpoints of every public format, and the refusals
an operator can run into: unknown format, another release's file, missing or extra keys, not a checkpoint, an
unsafe pickle, a changed file, a network that no longer computes what it did when imported."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml

from core.manifest import read_manifest
from models.integrity import sha256_file
from models.pack_cli import Refused, check_pack, import_checkpoint, main
from tests.conftest import shared_file
from tests.support.interop import VECTORS, Vector

VectorFactory = Callable[[str], Vector]


@pytest.fixture(scope="module")
def imported_pack(tmp_path_factory: pytest.TempPathFactory, interop_vector: VectorFactory) -> Path:
    """One pack holding every public format, imported from the generated release files."""
    pack = tmp_path_factory.mktemp("byo") / "byo.yaml"
    for stem in sorted(VECTORS):
        vector = interop_vector(stem)
        import_checkpoint(vector.format, vector.checkpoint, pack, name=stem, options=vector.options or None)
    return pack


def test_import_records_format_preprocessing_and_pins_the_file(imported_pack: Path) -> None:
    manifest = read_manifest(imported_pack)
    assert {m.name for m in manifest.members} == set(VECTORS)
    raw = {m["name"]: m for m in yaml.safe_load(imported_pack.read_text())["members"]}
    sbi = raw["sbi_efficientnetb4"]
    assert (sbi["format"], sbi["input_size"], sbi["normalisation"], sbi["crop"]) == (
        "sbi_efficientnetb4",
        380,
        "unit",
        "sbi_eighth",
    )
    assert raw["dfdc_tf_efficientnet_b7"]["crop"] == "dfdc_third_pad"
    assert raw["deepfakebench_xception"]["normalisation"] == "half"
    for member in manifest.members:
        # The file now sits in the pack's weights folder, pinned by sha256 and by its outputs on the probe.
        assert sha256_file(imported_pack.parent / member.checkpoint) == member.sha256
        assert member.check is not None and len(member.check.logits) == 2


def test_check_passes_every_imported_member(imported_pack: Path) -> None:
    assert check_pack(imported_pack) == [(stem, None) for stem in sorted(VECTORS)]


def test_cli_import_prints_what_it_did(
    interop_vector: VectorFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vector = interop_vector("deepfakebench_xception")
    assert main(["import", "deepfakebench_xception", str(vector.checkpoint), "--pack", str(tmp_path / "p.yaml")]) == 0
    out = capsys.readouterr().out
    assert "imported deepfakebench_xception.ckpt as deepfakebench_xception" in out
    assert "input 256 px, normalisation half, crop square_1.3, output softmax (class 1 = FAKE)" in out
    assert sha256_file(vector.checkpoint) in out
    assert main(["check", str(tmp_path / "p.yaml")]) == 0
    assert "ok     deepfakebench_xception" in capsys.readouterr().out


def refusal(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 1
    return capsys.readouterr().err


def test_unknown_format_is_refused_with_the_known_ones(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.pth").write_bytes(b"x")
    err = refusal(
        ["import", "deepfakebench_resnet", str(tmp_path / "x.pth"), "--pack", str(tmp_path / "p.yaml")], capsys
    )
    assert "unknown format 'deepfakebench_resnet'" in err and "sbi_efficientnetb4" in err
    assert not (tmp_path / "p.yaml").exists()


def test_another_releases_file_is_refused_naming_its_format(
    interop_vector: VectorFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sbi = interop_vector("sbi_efficientnetb4").checkpoint
    err = refusal(["import", "deepfakebench_efficientnetb4", str(sbi), "--pack", str(tmp_path / "p.yaml")], capsys)
    assert "is a sbi_efficientnetb4 checkpoint" in err and "set format: sbi_efficientnetb4" in err
    f3net = interop_vector("deepfakebench_f3net").checkpoint
    err = refusal(["import", "deepfakebench_xception", str(f3net), "--pack", str(tmp_path / "p.yaml")], capsys)
    assert "is a deepfakebench_f3net checkpoint" in err


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: s.pop("backbone.block3.rep.1.pointwise.weight"), r"missing keys: block3\.rep\.1\.pointwise\.weight"),
        (lambda s: s.update({"backbone.extra.weight": torch.zeros(1)}), r"unexpected keys: extra\.weight"),
        (
            lambda s: s.update({"backbone.last_linear.weight": torch.zeros(3, 2048)}),
            r"fc\.weight \(3, 2048\) != \(2, 2048\)",
        ),
    ],
)
def test_missing_extra_and_misshaped_keys_are_named(
    edit: Callable[[dict[str, torch.Tensor]], object],
    message: str,
    interop_vector: VectorFactory,
    tmp_path: Path,
) -> None:
    state = torch.load(interop_vector("deepfakebench_xception").checkpoint, weights_only=True)
    edit(state)
    torch.save(state, tmp_path / "edited.pth")
    with pytest.raises(Refused, match=message):
        import_checkpoint("deepfakebench_xception", tmp_path / "edited.pth", tmp_path / "p.yaml")


def test_wrong_files_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pack = str(tmp_path / "p.yaml")
    (tmp_path / "notes.txt").write_text("weights are on the shared drive\n")
    assert "not a torch checkpoint" in refusal(
        ["import", "ffpp_xception", str(tmp_path / "notes.txt"), "--pack", pack], capsys
    )
    assert "no such checkpoint file" in refusal(
        ["import", "ffpp_xception", str(tmp_path / "gone.p"), "--pack", pack], capsys
    )
    # A whole pickled module (the FF++ release is one): never unpickled here, pointed at the offline converter.
    torch.save(torch.nn.Linear(2, 2), tmp_path / "all_c23.p", pickle_module=pickle)
    err = refusal(["import", "ffpp_xception", str(tmp_path / "all_c23.p"), "--pack", pack], capsys)
    assert "verity-pack convert-pickle" in err and "torch.nn.modules.linear.Linear" in err


def test_check_fails_on_a_changed_file_and_on_changed_outputs(
    interop_vector: VectorFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vector = interop_vector("deepfakebench_f3net")
    pack = tmp_path / "p.yaml"
    import_checkpoint(vector.format, vector.checkpoint, pack, name="f3net")
    doc = yaml.safe_load(pack.read_text())
    doc["members"][0]["check"]["logits"][0][0] += 0.01
    pack.write_text(yaml.safe_dump(doc))
    assert main(["check", str(pack)]) == 1
    assert "it is not the network that was imported" in capsys.readouterr().out
    doc["members"][0]["sha256"] = "0" * 64
    pack.write_text(yaml.safe_dump(doc))
    assert main(["check", str(pack)]) == 1
    assert "sha256 mismatch" in capsys.readouterr().out


def test_convert_pickle_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.save(torch.nn.Linear(2, 2), tmp_path / "trusted.p")
    (tmp_path / "plain.pth").write_bytes(b"keep me")
    assert "exists" in refusal(["convert-pickle", str(tmp_path / "trusted.p"), str(tmp_path / "plain.pth")], capsys)
    assert (tmp_path / "plain.pth").read_bytes() == b"keep me"
    assert main(["convert-pickle", str(tmp_path / "trusted.p"), str(tmp_path / "out.pth")]) == 0
    assert set(torch.load(tmp_path / "out.pth", weights_only=True)) == {"weight", "bias"}


def test_mesonet_keras_file_imports_and_checks(tmp_path: Path) -> None:
    pack = tmp_path / "meso.yaml"
    result = import_checkpoint("meso4", shared_file("weights/mesonet/Meso4_DF.h5"), pack, name="meso4_df")
    assert result.member["sha256"] == "036ed30d04ffd9c7506f825b97c86aa64915f5818931da96817b169aad790af5"
    assert (result.member["normalisation"], result.member["crop"], result.member["input_size"]) == (
        "unit",
        "seed_pad30",
        256,
    )
    assert check_pack(pack) == [("meso4_df", None)]
    with pytest.raises(Refused, match="does not load as mesoinception4"):
        import_checkpoint("mesoinception4", tmp_path / "Meso4_DF.h5", tmp_path / "other.yaml")
