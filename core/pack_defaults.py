"""The pack's fusion spec and base member weights, read from its manifest (YAML only, no torch): how jobs are
scored when no calibration version says otherwise."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from core.manifest import ManifestError, read_manifest
from core.scoring.verdict import FusionSpec

log = logging.getLogger(__name__)

# What a job is scored with when the manifest cannot be read: the pipeline's own defaults.
DEFAULT_FUSION = FusionSpec("weighted_average", 0.5, 0.5, 1)


@dataclass(frozen=True)
class PackDefaults:
    fusion: FusionSpec
    weights: Mapping[str, float] = field(default_factory=dict)  # by member name, in the pack's order


def pack_defaults(manifest_path: Path) -> PackDefaults:
    """The manifest's fusion and member weights; the default fusion (and a warning) when it cannot be read."""
    try:
        manifest = read_manifest(manifest_path)
    except ManifestError as exc:
        log.warning("using default fusion settings: %s", exc)
        return PackDefaults(DEFAULT_FUSION)
    f = manifest.fusion
    return PackDefaults(
        FusionSpec(f.method, f.t_low, f.t_high, f.min_models, dict(f.params)),
        {m.name: m.weight for m in manifest.members},
    )
