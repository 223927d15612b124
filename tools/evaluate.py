"""``verity-evaluate``: score every clip of a labelled manifest with a model pack and report how it did.

Prints one row per video as it is scored, then the ROC AUC of the fused score and of each model's aggregated
score (scikit-learn; NO_FACE and failed clips are left out and counted), and the confusion matrix of the
verdicts at the pack's own thresholds with TPR, FPR and the uncertain rate. Then an identity-disjoint
cross-validation of the face models alone, the forensic signals alone and both fused (tools/evaluate_cv.py).
No services are needed.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from sklearn.metrics import roc_auc_score

from core.media.errors import MediaError
from core.scoring.fusion import NotEnoughModels
from core.settings import REPO_ROOT
from core.vocabulary import Verdict
from tools.evaluate_cv import cv_lines
from tools.scan import TEST_PACK_BANNER, tool_settings
from workers.pipeline import run_pipeline
from workers.resources import Resources, load_resources

DEFAULT_MANIFEST = REPO_ROOT.parent / "shared" / "testdata" / "manifest.csv"
LABELS = (Verdict.REAL.value, Verdict.FAKE.value)
COLUMNS = (
    Verdict.REAL.value,
    Verdict.UNCERTAIN.value,
    Verdict.FAKE.value,
    Verdict.NO_FACE.value,
    Verdict.NOT_APPLICABLE.value,
)
ERROR = "ERROR"  # the clip could not be scored (refused media, too few working models)


def read_manifest(path: Path) -> list[tuple[str, str]]:
    """(path as written, label) per clip; paths are relative to the manifest's folder."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = [(row["path"], row["label"].strip().upper()) for row in csv.DictReader(fh)]
    bad = sorted({label for _, label in rows if label not in LABELS})
    if bad:
        raise ValueError(f"{path}: labels must be REAL or FAKE, found {bad}")
    return rows


def score_clip(video: Path, label: str, shown_path: str, resources: Resources) -> dict[str, Any]:
    start = time.perf_counter()
    row: dict[str, Any] = {"path": shown_path, "label": label}
    try:
        result = run_pipeline(video, resources.faces, resources.pack, resources.config).result
    except (MediaError, NotEnoughModels) as exc:
        # One bad clip must not end a long evaluation: report it and leave it out of the metrics.
        return {
            **row,
            "verdict": ERROR,
            "score": None,
            "per_model": {},
            "signals": {},
            "tracks": 0,
            "seconds": round(time.perf_counter() - start, 2),
            "error": str(exc),
        }
    per_model = {name: m.aggregated for name, m in result.per_model.items()}
    return {
        **row,
        "verdict": result.verdict.value,
        "score": result.score,
        "per_model": per_model,
        "signals": {} if result.signals is None else result.signals.to_json()["values"],
        "tracks": len(result.tracks.tracks),
        "seconds": round(time.perf_counter() - start, 2),
    }


def _auc(pairs: list[tuple[str, float]]) -> float | None:
    labels = [int(label == Verdict.FAKE.value) for label, _ in pairs]
    if len(set(labels)) < 2:
        return None  # AUC needs both classes
    return float(roc_auc_score(labels, [score for _, score in pairs]))


def summarise(rows: list[dict[str, Any]], models: list[str]) -> dict[str, Any]:
    """AUCs over the scored clips, the confusion matrix over all of them, and the rates at the thresholds."""
    scored = [r for r in rows if r["score"] is not None]
    model_auc = {
        name: _auc([(r["label"], r["per_model"][name]) for r in scored if r["per_model"].get(name) is not None])
        for name in models
    }
    confusion = {label: dict.fromkeys((*COLUMNS, ERROR), 0) for label in LABELS}
    for r in rows:
        confusion[r["label"]][r["verdict"]] += 1

    def rate(label: str, verdict: str) -> float | None:
        n = sum(1 for r in scored if r["label"] == label)
        return confusion[label][verdict] / n if n else None

    return {
        "clips": len(rows),
        "scored": len(scored),
        "no_face": sum(1 for r in rows if r["verdict"] == Verdict.NO_FACE.value),
        "errors": sum(1 for r in rows if r["verdict"] == ERROR),
        "auc": _auc([(r["label"], r["score"]) for r in scored]),
        "auc_per_model": model_auc,
        "confusion": confusion,
        "tpr": rate(Verdict.FAKE.value, Verdict.FAKE.value),
        "fpr": rate(Verdict.REAL.value, Verdict.FAKE.value),
        "uncertain_rate": (
            sum(1 for r in scored if r["verdict"] == Verdict.UNCERTAIN.value) / len(scored) if scored else None
        ),
    }


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _row_line(row: dict[str, Any], models: list[str], width: int) -> str:
    scores = "".join(f"{_fmt(row['per_model'].get(m)):>18}" for m in models)
    line = f"{row['path']:<{width}} {row['label']:<6}{row['verdict']:<10}{_fmt(row['score']):>8}{scores}"
    line += f"{row['seconds']:>9.1f}"
    return line + (f"  {row['error']}" if row.get("error") else "")


def print_summary(summary: dict[str, Any], method: str, t_low: float, t_high: float) -> None:
    left_out = f"{summary['no_face']} NO_FACE" + (f", {summary['errors']} failed" if summary["errors"] else "")
    print(f"\n{summary['clips']} clips, {summary['scored']} scored ({left_out} left out of AUC and rates)")
    print(f"ROC AUC fused score: {_fmt(summary['auc'])}")
    for name, auc in summary["auc_per_model"].items():
        print(f"ROC AUC {name}: {_fmt(auc)}")
    print(f"\nconfusion matrix at {method} thresholds: REAL < {t_low} <= UNCERTAIN <= {t_high} < FAKE")
    columns = [*COLUMNS, *([ERROR] if summary["errors"] else [])]
    print(f"{'label':<8}" + "".join(f"{c:>11}" for c in columns))
    for label, counts in summary["confusion"].items():
        print(f"{label:<8}" + "".join(f"{counts[c]:>11}" for c in columns))
    print(
        f"\nTPR (FAKE called FAKE) {_fmt(summary['tpr'], 3)}   FPR (REAL called FAKE) {_fmt(summary['fpr'], 3)}   "
        f"uncertain rate {_fmt(summary['uncertain_rate'], 3)}   (over the {summary['scored']} scored clips)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="verity-evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST, help="CSV with path,label columns")
    parser.add_argument("--pack", type=Path, help="model pack manifest (default: $VERITY_PACK or the default pack)")
    parser.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    parser.add_argument("--downscale", type=float, help="run MTCNN on frames shrunk by this factor (0, 1]")
    parser.add_argument("--json", type=Path, help="also write rows and metrics to this JSON file")
    parser.add_argument("--folds", type=int, default=5, help="identity-disjoint cross-validation folds (0: none)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the cross-validation's fold assignment")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        parser.error(f"manifest {args.manifest} not found")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    clips = read_manifest(args.manifest)
    resources = load_resources(tool_settings(args.pack, args.frames, args.downscale))
    fusion = resources.pack.manifest.fusion
    models = [m.name for m in resources.pack.manifest.members]
    pack_name = f"{resources.pack.manifest.name}@{resources.pack.manifest.version}"
    if resources.pack.manifest.test_pack:
        print(TEST_PACK_BANNER)
    print(f"pack {pack_name}, {args.frames} frames per video, {len(clips)} clips from {args.manifest}\n")
    width = max(len(path) for path, _ in clips)
    print(
        f"{'path':<{width}} {'label':<6}{'verdict':<10}{'score':>8}"
        + "".join(f"{m:>18}" for m in models)
        + f"{'seconds':>9}"
    )

    started = time.perf_counter()
    rows = []
    for shown, label in clips:
        row = score_clip(args.manifest.parent / shown, label, shown, resources)
        rows.append(row)
        print(_row_line(row, models, width), flush=True)
    summary = summarise(rows, models)
    print_summary(summary, fusion.method, fusion.t_low, fusion.t_high)
    if args.folds:
        print("\n" + "\n".join(cv_lines(rows, models, args.folds, args.seed)))
    print(f"total {time.perf_counter() - started:.0f} s")
    if resources.pack.manifest.test_pack:
        print(TEST_PACK_BANNER)

    if args.json:
        report = {
            "manifest": str(args.manifest),
            "pack": pack_name,
            "test_pack": resources.pack.manifest.test_pack,
            "frames": args.frames,
            "method": fusion.method,
            "t_low": fusion.t_low,
            "t_high": fusion.t_high,
            "rows": rows,
            "summary": summary,
        }
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
