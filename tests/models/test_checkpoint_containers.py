"""The weights-only reader on every public release's container (../shared/interop), and what it refuses."""

from __future__ import annotations

import argparse
import io
import json
import pickle
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import h5py
import numpy as np
import pytest
import torch
from numpy._core.multiarray import scalar as numpy2_scalar

from models.checkpoint import (
    CheckpointError,
    NotAStateDictError,
    NotATorchFileError,
    UnsafeCheckpointError,
    WrapperMismatchError,
    read_checkpoint,
    read_state_dict,
)
from tests.support.interop import INTEROP, Vector, expected, generator

pytestmark = pytest.mark.skipif(
    not (INTEROP / "make_checkpoint.py").is_file(), reason=f"interop vectors not found in {INTEROP}"
)

# Every release layout, with where its state dict sits. The full Effort files (1.2 / 1.7 GB) are covered by
# their _tiny layouts: same container and key structure. The DFDC B7 file has a test of its own below.
RELEASES: dict[str, tuple[bool, tuple[str, ...]]] = {
    "deepfakebench_xception": (False, ()),
    "deepfakebench_efficientnetb4": (False, ()),
    "deepfakebench_f3net": (False, ()),
    "deepfakebench_effort": (True, ()),
    "ffpp_xception": (False, ()),
    "sbi_efficientnetb4": (False, ("model",)),
    "effort_aigi": (True, ("model",)),
}
DFDC = "dfdc_tf_efficientnet_b7"
DFDC_WRAPPER = ("state_dict",)


@pytest.fixture(scope="module")
def make_checkpoint() -> ModuleType:
    return generator()


@pytest.fixture
def checkpoint_path(tmp_path: Path) -> Iterator[Path]:
    # The generated files are 70-90 MB: remove them now rather than leave them in pytest's kept temp dirs.
    path = tmp_path / "ckpt"
    yield path
    path.unlink(missing_ok=True)


@pytest.fixture(scope="module")
def dfdc(interop_vector: Callable[[str], Vector]) -> Path:
    """The DFDC winner's B7 file at full size (267 MB, legacy format), written once per session and checked
    against expected/dfdc_tf_efficientnet_b7.json's tensors_sha256 by tests.support.interop.make_vector."""
    return interop_vector(DFDC).checkpoint


def test_every_layout_has_a_case() -> None:
    stems = {p.stem.removesuffix("_tiny") for p in (INTEROP / "layouts").glob("*.json")}
    assert stems == {*RELEASES, DFDC}


@pytest.mark.parametrize("fmt", sorted(RELEASES))
def test_release_container_loads_with_its_wrapper(fmt: str, make_checkpoint: ModuleType, checkpoint_path: Path) -> None:
    tiny, wrapper = RELEASES[fmt]
    stem = f"{fmt}_tiny" if tiny else fmt
    exp = expected(stem)
    info = make_checkpoint.make(fmt, checkpoint_path, tiny=tiny)
    assert info["tensors_sha256"] == exp["checkpoint"]["tensors_sha256"]

    state = read_state_dict(checkpoint_path, wrapper=wrapper)
    assert len(state) == info["n_tensors"]
    assert make_checkpoint.tensors_digest(state) == exp["checkpoint"]["tensors_sha256"]
    assert list(read_state_dict(checkpoint_path)) == list(state)  # auto-unwrap finds the same dict

    if wrapper:  # a wrapped release read as if its dict sat under another key: the error lists the real keys
        layout = json.loads((INTEROP / "layouts" / f"{stem}.json").read_text())
        top_keys = ", ".join(sorted(key for key, _ in layout["container"]["items"]))
        with pytest.raises(WrapperMismatchError, match=f"its top level is a dict with keys: {top_keys}$"):
            read_state_dict(checkpoint_path, wrapper=("state_dict",))
    else:
        with pytest.raises(WrapperMismatchError, match=f"its top level is a state dict of {len(state)} tensors$"):
            read_state_dict(checkpoint_path, wrapper=("model",))


def test_dfdc_legacy_file_loads_through_the_allow_list(dfdc: Path, make_checkpoint: ModuleType) -> None:
    exp = expected(DFDC)
    state = read_state_dict(dfdc, wrapper=DFDC_WRAPPER)
    assert len(state) == 1202
    assert make_checkpoint.tensors_digest(state) == exp["checkpoint"]["tensors_sha256"]
    assert "module.fc.weight" in state and state["module.encoder.classifier.weight"].shape == (1000, 2560)

    whole = read_checkpoint(dfdc)
    assert whole["epoch"] == 37
    assert type(whole["bce_best"]) is np.float64 and whole["bce_best"] == 0.19
    assert list(read_state_dict(dfdc)) == list(state)


def test_dfdc_needs_the_allow_list(dfdc: Path) -> None:
    """Why the allow-list exists: torch's own weights-only load refuses numpy 1.x's scalar global."""
    with pytest.raises(pickle.UnpicklingError, match=r"numpy\.core\.multiarray\.scalar"):
        torch.load(dfdc, map_location="cpu", weights_only=True)
    # ... and the scalar reconstructor under its numpy-2 name alone does not cover the numpy-1 name.
    with (
        torch.serialization.safe_globals([numpy2_scalar, np.dtype, np.dtypes.Float64DType]),
        pytest.raises(pickle.UnpicklingError, match=r"numpy\.core\.multiarray\.scalar"),
    ):
        torch.load(dfdc, map_location="cpu", weights_only=True)


def tiny_state() -> dict[str, torch.Tensor]:
    return {"fc.weight": torch.arange(6.0).reshape(2, 3), "fc.bias": torch.zeros(2)}


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_numeric_numpy_scalars_are_accepted(tmp_path: Path, zip_format: bool) -> None:
    scores = {
        "best_auc": np.float32(0.93),
        "bce_best": np.float64(0.19),
        "step": np.int64(1200),
        "epoch": np.int32(7),
        "stopped": np.bool_(True),
    }
    path = tmp_path / "scores.pt"
    torch.save({"state_dict": tiny_state(), **scores}, path, _use_new_zipfile_serialization=zip_format)
    whole = read_checkpoint(path)
    for key, value in scores.items():
        assert type(whole[key]) is type(value) and whole[key] == value, key
    assert torch.equal(read_state_dict(path, wrapper=("state_dict",))["fc.weight"], tiny_state()["fc.weight"])


class TrainingConfig:
    """Stands for any class a training script pickles next to its weights."""

    def __init__(self) -> None:
        self.lr = 0.1


@pytest.mark.parametrize(
    ("extra", "global_name"),
    [
        (argparse.Namespace(lr=0.1), "argparse.Namespace"),
        (TrainingConfig(), f"{__name__}.TrainingConfig"),
        (np.zeros(3), "numpy._core.multiarray._reconstruct"),  # arrays are not scalars: not allow-listed
        (np.zeros(1, dtype=[("a", "f4")])[0], "numpy.dtypes.VoidDType"),  # nor are structured scalars
    ],
    ids=["namespace", "custom_class", "ndarray", "void_scalar"],
)
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_other_globals_are_refused_with_the_converter_hint(
    tmp_path: Path, extra: object, global_name: str, zip_format: bool
) -> None:
    path = tmp_path / "extra.pt"
    torch.save({"state_dict": tiny_state(), "extra": extra}, path, _use_new_zipfile_serialization=zip_format)
    with pytest.raises(UnsafeCheckpointError) as err:
        read_state_dict(path)
    assert err.value.global_name == global_name
    message = str(err.value)
    assert message.startswith("cannot read checkpoint extra.pt: it pickles " + global_name)
    assert "unpickling it would run code" in message
    assert f"verity-pack convert-pickle {path} DST" in message
    assert "weights_only=False" not in message


def write_hdf5(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["model_weights/dense/kernel"] = np.zeros((2, 2), np.float32)


def write_npz(path: Path) -> None:
    with open(path, "wb") as fh:
        np.savez(fh, w=np.zeros(3))


def npy_bytes() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros(3))
    return buffer.getvalue()


NOT_TORCH: list[tuple[str, Callable[[Path], object], str]] = [
    ("hdf5", write_hdf5, "it is an HDF5 file"),
    ("text", lambda p: p.write_text("<!DOCTYPE html>\n<html>Quota exceeded</html>\n"), "text file, starting '<!DOC"),
    ("lfs", lambda p: p.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n"), "Git LFS pointer"),
    ("empty", lambda p: p.write_bytes(b""), "the file is empty"),
    ("npy", lambda p: p.write_bytes(npy_bytes()), "NumPy .npy array"),
    ("npz", write_npz, "NumPy .npz archive"),
    ("pickle", lambda p: p.write_bytes(pickle.dumps({"w": [1.0]})), "Python pickle without torch's header"),
    ("binary", lambda p: p.write_bytes(bytes(range(7, 64))), "unrecognised binary data"),
]


@pytest.mark.parametrize(("writer", "looks_like"), [case[1:] for case in NOT_TORCH], ids=[c[0] for c in NOT_TORCH])
def test_non_torch_files_say_what_they_are(tmp_path: Path, writer: Callable[[Path], object], looks_like: str) -> None:
    path = tmp_path / "weights.pth"
    writer(path)
    with pytest.raises(NotATorchFileError, match=r"cannot read checkpoint weights\.pth: not a torch checkpoint") as err:
        read_state_dict(path)
    assert looks_like in str(err.value)


@pytest.mark.parametrize(
    ("obj", "wrapper", "message"),
    [
        ({}, (), "the state dict is empty"),
        ({"state_dict": {}}, ("state_dict",), "the state dict is empty"),
        ({"fc.weight": torch.zeros(1), "note": "x", "n": 3}, (), r"non-tensor entries: n \(int\), note \(str\)"),
        ({"epoch": 3, "net": tiny_state()}, None, r"non-tensor entries: epoch \(int\), net \(dict\)"),
        ([torch.zeros(1)], None, "expected a state dict .* got a list"),
    ],
    ids=["empty", "empty_wrapped", "non_tensor", "unknown_wrapper", "list"],
)
def test_not_a_state_dict_names_the_entries(
    tmp_path: Path, obj: object, wrapper: tuple[str, ...] | None, message: str
) -> None:
    path = tmp_path / "odd.pt"
    torch.save(obj, path)
    with pytest.raises(NotAStateDictError, match=message):
        read_state_dict(path, wrapper=wrapper)


def test_nested_wrapper_descends_exactly(tmp_path: Path) -> None:
    path = tmp_path / "nested.pt"
    torch.save({"ema": {"model": tiny_state()}, "model": {"other.weight": torch.ones(1)}}, path)
    assert list(read_state_dict(path, wrapper=("ema", "model"))) == ["fc.weight", "fc.bias"]
    assert list(read_state_dict(path)) == ["other.weight"]  # auto-unwrap takes the usual key
    with pytest.raises(WrapperMismatchError, match=r"at \['ema'\]\['state_dict'\], but \['ema'\] is .*keys: model"):
        read_state_dict(path, wrapper=("ema", "state_dict"))


def test_truncated_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.pt"
    torch.save(tiny_state(), path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint cut\.pt") as err:
        read_state_dict(path)
    assert type(err.value) is CheckpointError
