"""Identity-disjoint cross-validation for ``verity-evaluate``: the face models alone, the forensic signals alone,
and both fused, each scored on clips whose people its fit never saw.

Clips of the same person (a real video and the fakes made from it, one person filmed twice) share an identity
group, listed with the reason for each in ``evaluate_groups.csv`` next to this file (the manifest states the
pairs only in free-text notes, and one pair was found by eye); a clip not listed is a group of its own. A group
is never split across folds. Each fold fits on the other folds only, through the production code: feature
health on the training clips (broken signals are left out and reported), the signals' imputation and
standardisation, the logistic-regression stacker and its Platt calibration (``core.scoring.fusion``). Nothing
is chosen by looking at a held-out fold. Two untrained references are scored on the same folds: the pack's own
fusion and the signals' rule score.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedGroupKFold

from core.scoring.feature_health import check_features
from core.scoring.fusion import fit_stacker, stacker
from core.scoring.metrics import roc_auc
from core.scoring.recalibration_steps import signal_matrix
from core.scoring.signal_rules import rule_score
from core.signals import SIGNALS, SignalSpec
from core.vocabulary import Verdict

GROUPS_FILE = Path(__file__).with_name("evaluate_groups.csv")

PACK_FUSION = "face models: pack fusion (untrained)"
FACE_STACKER = "face models: stacker"
SIGNAL_RULES = "signals: rules (untrained)"
SIGNAL_STACKER = "signals: stacker"
FUSED_STACKER = "face models + signals: stacker"
APPROACHES = (PACK_FUSION, FACE_STACKER, SIGNAL_RULES, SIGNAL_STACKER, FUSED_STACKER)


@dataclass(frozen=True)
class EvalClip:
    """One scored clip: its label (1 = FAKE), each model's aggregated score on the worst track, the pack's fused
    score and its forensic signals (NaN or absent: not computed)."""

    path: str
    label: int
    scores: Mapping[str, float]
    fused: float
    signals: Mapping[str, float]


@dataclass(frozen=True)
class Fold:
    """One held-out fold: its clips' indices, its identity groups, and the signals its training part dropped."""

    test: tuple[int, ...]
    groups: tuple[str, ...]
    n_real: int
    n_fake: int
    dropped: Mapping[str, str]


@dataclass(frozen=True)
class CvReport:
    """Per approach: each fold's AUC (None for a fold with one class) and the out-of-fold scores by clip."""

    clips: Sequence[EvalClip]
    groups: Sequence[str]
    folds: Sequence[Fold]
    fold_auc: Mapping[str, Sequence[float | None]]
    out_of_fold: Mapping[str, Sequence[float]]
    signal_names: Sequence[str]

    def pooled_auc(self, approach: str) -> float:
        """AUC over every clip's out-of-fold score (each from a model that did not see the clip's group)."""
        return roc_auc([c.label for c in self.clips], self.out_of_fold[approach])


def read_groups(path: Path = GROUPS_FILE) -> dict[str, str]:
    """Clip path (as in the manifest) -> identity group, from a CSV with path, group and reason columns."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    unexplained = [row["path"] for row in rows if not (row.get("reason") or "").strip()]
    if unexplained:
        raise ValueError(f"{path}: every grouped clip needs a reason; missing for {unexplained}")
    return {row["path"]: row["group"] for row in rows}


def identity_groups(paths: Sequence[str], explicit: Mapping[str, str]) -> list[str]:
    """Each clip's identity group: the listed one, or the clip itself."""
    return [explicit.get(path, path) for path in paths]


def identity_folds(labels: Sequence[int], groups: Sequence[str], n_folds: int, seed: int) -> list[NDArray[np.intp]]:
    """Held-out indices of each fold: whole identity groups only, classes balanced as far as the groups allow."""
    if len(set(groups)) < n_folds:
        raise ValueError(f"{n_folds} folds need at least {n_folds} identity groups, have {len(set(groups))}")
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    index = np.arange(len(labels))
    return [test for _, test in splitter.split(index, np.asarray(labels), np.asarray(groups))]


def _auc(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    return roc_auc(labels, scores) if len(set(labels)) == 2 else None


def _fit_and_score(
    train: Sequence[EvalClip],
    test: Sequence[EvalClip],
    models: Sequence[str],
    signals: Sequence[str],
    max_signal_nan: float,
) -> list[float]:
    if not models and not signals:
        return [0.5] * len(test)  # every signal broken in this training part: nothing to fit, no opinion
    y = np.array([c.label for c in train])
    x = np.array([[c.scores[m] for m in models] for c in train], dtype=np.float64).reshape(len(train), len(models))
    matrix = signal_matrix(train, signals)
    params = fit_stacker(
        x, y, list(models), signal_values=matrix, signal_names=signals, mostly_nan_above=max_signal_nan
    )
    return [stacker({m: c.scores[m] for m in models}, params, c.signals) for c in test]


def cross_validate(
    clips: Sequence[EvalClip],
    groups: Sequence[str],
    models: Sequence[str],
    n_folds: int = 5,
    seed: int = 0,
    catalogue: Sequence[SignalSpec] = SIGNALS,
    max_signal_nan: float = 0.5,
) -> CvReport:
    """Fit and score every approach fold by fold (see the module docstring)."""
    labels = [c.label for c in clips]
    names = [s.name for s in catalogue]
    folds: list[Fold] = []
    fold_auc: dict[str, list[float | None]] = {a: [] for a in APPROACHES}
    out_of_fold: dict[str, list[float]] = {a: [math.nan] * len(clips) for a in APPROACHES}
    for test_idx in identity_folds(labels, groups, n_folds, seed):
        held = set(int(i) for i in test_idx)
        train = [c for i, c in enumerate(clips) if i not in held]
        test = [clips[i] for i in sorted(held)]
        health = check_features(signal_matrix(train, names), names, names, max_signal_nan)
        usable = list(health.usable)
        scores = {
            PACK_FUSION: [c.fused for c in test],
            # A clip the rules cannot read (no ruled signal computed) is scored 0.5: no opinion either way.
            SIGNAL_RULES: [_or_half(rule_score(c.signals, catalogue).score) for c in test],
            FACE_STACKER: _fit_and_score(train, test, models, [], max_signal_nan),
            SIGNAL_STACKER: _fit_and_score(train, test, [], usable, max_signal_nan),
            FUSED_STACKER: _fit_and_score(train, test, models, usable, max_signal_nan),
        }
        test_labels = [c.label for c in test]
        for approach, values in scores.items():
            fold_auc[approach].append(_auc(test_labels, values))
            for i, v in zip(sorted(held), values, strict=True):
                out_of_fold[approach][i] = v
        folds.append(
            Fold(
                tuple(sorted(held)),
                tuple(sorted({groups[i] for i in held})),
                test_labels.count(0),
                test_labels.count(1),
                health.broken,
            )
        )
    return CvReport(clips, groups, folds, fold_auc, out_of_fold, names)


def _or_half(score: float | None) -> float:
    return 0.5 if score is None else score


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def format_report(report: CvReport, models: Sequence[str], seed: int) -> list[str]:
    """The table verity-evaluate prints: per approach the mean, spread and range of the fold AUCs and the
    pooled out-of-fold AUC, then the folds and the caveat of the sample size."""
    n_real = sum(1 for c in report.clips if c.label == 0)
    n_fake = len(report.clips) - n_real
    k = len(report.folds)
    width = max(len(a) for a in APPROACHES)
    lines = [
        f"identity-disjoint {k}-fold cross-validation (seed {seed}): {len(report.clips)} clips ({n_real} REAL, "
        f"{n_fake} FAKE) in {len(set(report.groups))} identity groups; models: {', '.join(models)}",
        "",
        f"| {'approach':<{width}} | AUC mean | std (folds) | min - max     | pooled out-of-fold AUC |",
        f"|{'-' * (width + 2)}|----------|-------------|---------------|------------------------|",
    ]
    for approach in APPROACHES:
        aucs = [a for a in report.fold_auc[approach] if a is not None]
        mean = float(np.mean(aucs)) if aucs else None
        std = float(np.std(aucs, ddof=1)) if len(aucs) > 1 else None
        spread = f"{min(aucs):.3f} - {max(aucs):.3f}" if aucs else "-"
        lines.append(
            f"| {approach:<{width}} | {_fmt(mean):>8} | {_fmt(std):>11} | {spread:<13} | "
            f"{report.pooled_auc(approach):>22.3f} |"
        )
    lines.append("")
    for i, fold in enumerate(report.folds):
        dropped = ", ".join(f"{n} ({p})" for n, p in sorted(fold.dropped.items())) or "none"
        fold_aucs = "  ".join(_fmt(report.fold_auc[a][i]) for a in APPROACHES)
        lines.append(
            f"fold {i + 1}: {fold.n_real} REAL + {fold.n_fake} FAKE, {len(fold.groups)} groups; AUCs {fold_aucs}; "
            f"signals left out of its fit: {dropped}"
        )
    smallest = min((f.n_real * f.n_fake for f in report.folds if f.n_real and f.n_fake), default=0)
    lines += [
        "",
        f"Caveat: {len(report.clips)} clips. A fold holds about {len(report.clips) // max(k, 1)} of them, so one "
        f"REAL/FAKE pair ordered the other way moves a fold's AUC by up to 1/{smallest}; the stackers fit "
        f"{len(models)} model scores and up to {len(report.signal_names)} signals on about "
        f"{len(report.clips) - len(report.clips) // max(k, 1)} clips. Differences smaller than the spread across "
        "folds are noise, and none of this measures other generators, cameras or compressions.",
    ]
    return lines


def clips_from_rows(rows: Sequence[Mapping[str, Any]], models: Sequence[str]) -> list[EvalClip]:
    """verity-evaluate's rows that every model scored (NO_FACE and failed clips have no model scores: left out);
    a signal stored as null (not computed) reads as NaN."""
    return [
        EvalClip(
            str(row["path"]),
            int(row["label"] == Verdict.FAKE.value),
            {m: float(row["per_model"][m]) for m in models},
            float(row["score"]),
            {name: math.nan if v is None else float(v) for name, v in (row.get("signals") or {}).items()},
        )
        for row in rows
        if row.get("score") is not None and all(row["per_model"].get(m) is not None for m in models)
    ]


def cv_lines(
    rows: Sequence[Mapping[str, Any]], models: Sequence[str], n_folds: int, seed: int, groups: Path = GROUPS_FILE
) -> list[str]:
    """Cross-validate the rows every model scored and format the report (one line saying why when the clips are
    too few to: fewer identity groups than folds, or a training part without three clips of each class)."""
    clips = clips_from_rows(rows, models)
    left_out = len(rows) - len(clips)
    try:
        report = cross_validate(
            clips, identity_groups([c.path for c in clips], read_groups(groups)), models, n_folds, seed
        )
    except ValueError as exc:
        return [f"identity-disjoint cross-validation skipped: {exc}"]
    note = [f"({left_out} clips without a score from every model left out)"] if left_out else []
    return [*format_report(report, models, seed), *note]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.evaluate_cv",
        description="Re-run verity-evaluate's cross-validation on the rows of an earlier `verity-evaluate --json`.",
    )
    parser.add_argument("report", type=Path, help="the JSON report verity-evaluate --json wrote")
    parser.add_argument("--folds", type=int, default=5, help="folds (default 5)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--groups", type=Path, default=GROUPS_FILE, help="identity groups CSV (path,group,reason)")
    args = parser.parse_args(argv)
    report = json.loads(args.report.read_text(encoding="utf-8"))
    models = sorted({name for row in report["rows"] for name in row["per_model"]})
    print("\n".join(cv_lines(report["rows"], models, args.folds, args.seed, args.groups)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
