"""Write a TEST-ONLY model pack (tiny architectures, seeded random weights) to OUTDIR.

Usage: python tools/make_test_pack.py OUTDIR [--seed N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from models.testpack import write_test_pack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    manifest = write_test_pack(args.outdir, args.seed)
    print(manifest)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
