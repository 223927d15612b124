"""The offline converter: a whole pickled model whose classes are not importable here becomes a plain state dict.

A subprocess plays the 2019 training machine: it has a package `network` (as FaceForensics++'s `all_c23.p`
needed) and saves a whole TransferModel. This process has no such package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from torch import nn

from models.checkpoint import UnsafeCheckpointError, read_state_dict
from models.convert import ConversionError, convert_pickled_module

NETWORK_PACKAGE = {
    "__init__.py": "",
    "xception.py": """
        import torch
        from torch import nn

        class SeparableConv2d(nn.Module):
            def __init__(self, cin, cout):
                super().__init__()
                self.conv1 = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
                self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

        class Block(nn.Module):
            def __init__(self, channels):
                super().__init__()
                self.rep = nn.Sequential(nn.ReLU(), SeparableConv2d(channels, channels), nn.BatchNorm2d(channels))
                self.register_buffer("gain", torch.full((channels,), 0.5))
                self.register_buffer("scratch", torch.zeros(2), persistent=False)  # not in the state dict

        class Xception(nn.Module):
            def __init__(self, num_classes=1000):
                super().__init__()
                self.conv1 = nn.Conv2d(3, 4, 3, 2, 0, bias=False)
                self.bn1 = nn.BatchNorm2d(4)
                self.block1 = Block(4)
                self.last_linear = nn.Linear(4, num_classes)
    """,
    "models.py": """
        from torch import nn
        from network.xception import Xception

        class TransferModel(nn.Module):
            def __init__(self, num_out_classes=2):
                super().__init__()
                self.model = Xception()
                self.model.last_linear = nn.Linear(4, num_out_classes)
    """,
}

SAVE_MODEL = """
import sys, torch
from network.models import TransferModel
torch.manual_seed(0)
model = TransferModel()
for module in model.modules():  # BN statistics that differ from their defaults
    if isinstance(module, torch.nn.BatchNorm2d):
        module.running_mean.normal_()
        module.running_var.uniform_(0.5, 2.0)
        module.num_batches_tracked += 7
model.eval()
torch.save(model, sys.argv[1] + ".legacy", _use_new_zipfile_serialization=False)  # as torch < 1.6 did
torch.save(model, sys.argv[1] + ".zip")
torch.save(model.state_dict(), sys.argv[2])
"""


@pytest.fixture(scope="module")
def trainer_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the whole pickled TransferModel (all_c23.p.legacy, .zip) and reference.pt, its state
    dict saved plainly by the same process. Written once: the subprocess spends seconds importing torch."""
    assert importlib.util.find_spec("network") is None, "the test needs `network` to be unimportable here"
    out = tmp_path_factory.mktemp("trainer")
    (out / "network").mkdir()
    for name, source in NETWORK_PACKAGE.items():
        (out / "network" / name).write_text(textwrap.dedent(source))
    subprocess.run(
        [sys.executable, "-c", SAVE_MODEL, str(out / "all_c23.p"), str(out / "reference.pt")],
        cwd=out,
        check=True,
        timeout=120,
    )
    return out


@pytest.fixture(params=["legacy", "zip"])
def pickled_model(trainer_files: Path, request: pytest.FixtureRequest) -> tuple[Path, Path]:
    """(whole pickled TransferModel in torch's legacy or zip format, the reference state dict)."""
    return trainer_files / f"all_c23.p.{request.param}", trainer_files / "reference.pt"


def test_pickled_module_converts_without_its_package(tmp_path: Path, pickled_model: tuple[Path, Path]) -> None:
    src, reference = pickled_model
    dst = tmp_path / "out" / "ffpp_xception.pt"
    dst.parent.mkdir()
    result = convert_pickled_module(src, dst)

    assert "network" not in sys.modules
    assert result.dst == dst
    assert result.top_level_class == "network.models.TransferModel"
    assert result.stand_ins == (
        "network.models.TransferModel",
        "network.xception.Block",
        "network.xception.SeparableConv2d",
        "network.xception.Xception",
    )
    converted = read_state_dict(dst, wrapper=())  # the safe reader takes the converted file as is
    original = read_state_dict(reference, wrapper=())
    assert list(converted) == list(original)
    assert result.n_tensors == len(original)
    for key, value in original.items():
        assert converted[key].dtype == value.dtype and torch.equal(converted[key], value), key
    assert "model.block1.scratch" not in converted  # non-persistent buffers stay out, as in the original
    assert int(converted["model.bn1.num_batches_tracked"]) == 7

    digest = hashlib.sha256(dst.read_bytes()).hexdigest()
    assert result.sha256 == digest
    assert (tmp_path / "out" / "ffpp_xception.pt.sha256").read_text() == f"{digest}  ffpp_xception.pt\n"


def test_safe_reader_refuses_the_pickled_module_and_names_the_converter(pickled_model: tuple[Path, Path]) -> None:
    src, _ = pickled_model
    with pytest.raises(UnsafeCheckpointError, match=r"it pickles network\.models\.TransferModel") as err:
        read_state_dict(src)
    assert f"verity-pack convert-pickle {src} DST" in str(err.value)


@pytest.mark.parametrize("existing", ["dst", "sidecar"])
def test_existing_destination_is_not_overwritten(
    tmp_path: Path, pickled_model: tuple[Path, Path], existing: str
) -> None:
    src, _ = pickled_model
    dst = tmp_path / "converted.pt"
    taken = dst if existing == "dst" else tmp_path / "converted.pt.sha256"
    taken.write_text("keep me")
    with pytest.raises(ConversionError, match=f"{taken.name} exists; refusing to overwrite it"):
        convert_pickled_module(src, dst)
    assert taken.read_text() == "keep me"
    assert (dst.exists(), dst.with_name("converted.pt.sha256").exists()) == (existing == "dst", existing != "dst")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (nn.Sequential(nn.ReLU(), nn.Flatten()), "the state dict is empty"),
        ({"epoch": 3, "args": "lr=0.1"}, r"no module or state dict in it, a dict with keys \['args', 'epoch'\]"),
        ([1, 2], "holds a list, not a module or a state dict"),
    ],
    ids=["no_tensors", "no_weights", "list"],
)
def test_nothing_to_convert_is_refused_and_writes_nothing(tmp_path: Path, obj: object, message: str) -> None:
    src, dst = tmp_path / "src.pt", tmp_path / "dst.pt"
    torch.save(obj, src)
    with pytest.raises(ConversionError, match=message):
        convert_pickled_module(src, dst)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src.pt"]


def test_wrapped_module_with_extras_converts(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    src, dst = tmp_path / "src.pt", tmp_path / "dst.pt"
    torch.save({"model": model, "args": {"lr": 0.1}, "epoch": 4}, src)
    result = convert_pickled_module(src, dst)
    assert (result.top_level_class, result.n_tensors, result.stand_ins) == ("builtins.dict", 2, ())
    assert torch.equal(read_state_dict(dst, wrapper=())["weight"], model.weight.detach())


def test_unreadable_source_is_a_conversion_error(tmp_path: Path) -> None:
    src = tmp_path / "notes.txt"
    src.write_text("not a pickle")
    with pytest.raises(ConversionError, match=r"cannot unpickle notes\.txt"):
        convert_pickled_module(src, tmp_path / "dst.pt")
    assert not (tmp_path / "dst.pt").exists()
