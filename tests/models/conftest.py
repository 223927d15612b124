"""Models tier: the torch networks, checkpoint containers and formats, pack loading and the pack CLI, face
detection and crops. Needs torch (CPU is enough) and ../shared/interop + ../shared/testdata (tests skip without
them); no database or network. A few minutes on 2 cores: `pytest tests/models`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.interop import Vector, make_vector


@pytest.fixture(scope="session")
def interop_vector(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Vector]:
    """stem -> Vector, each checkpoint written once per session (the B7 file takes ~20 s)."""
    folder: Path = tmp_path_factory.mktemp("interop")
    return lambda stem: make_vector(stem, folder)
