"""``python -m tools.bench``: time every pipeline stage on real clips, Verity against the seed-style baseline.

For each clip and repeat it runs, in this one process, the real pipeline (:func:`workers.pipeline.run_pipeline`)
and the naive baseline (:mod:`tools.naive`), alternating which goes first, and then the database + storage
round trip a job makes: the clip put to and read back from S3 (a local ``moto_server``) and the result row plus
its frame scores inserted into a scratch Postgres database, in one transaction like ``db.finish.complete``.
That round trip is the same code for both, so it is measured once per clip and repeat and counted in both
end-to-end totals. It prints per-stage seconds per video with the naive / Verity ratio, median seconds per video,
frames/s, videos/min, peak memory, checks that both reach the same verdicts, and measures the throughput of a
multi-video loop with and without decoding the next video while the current one is in inference. On the first clip
whose faces reach the detectors it also runs each member alone on the crops the pipeline fed it, for its seconds per
crop and its memory.

``--full-size-pack [PACK]`` times a pack whose checkpoints are not here: every member built from its format at full
size with seeded random weights (the scores mean nothing; the work is the real one).

The machines are shared: read the ratios, which are measured side by side; absolute times only mean something
on an otherwise idle host (a GPU host for the GPU numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import glob
import hashlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import numpy as np
import torch
from torch import nn

from core.crop_spec import crop_convention
from core.manifest import read_manifest
from core.media.errors import MediaError
from core.results import JobResult
from core.settings import REPO_ROOT, load_settings, sqlalchemy_url
from core.storage import LocalFolderStore, ObjectStore
from models.detector import TorchDetector
from models.formats import get_format
from models.loading import build
from models.pack import LoadedMember, LoadedPack, load_pack
from tools.naive import NaiveResult, run_naive, seed_mtcnn
from tools.services import DEFAULT_PG_ADMIN, moto_s3, scratch_database
from workers.explain.heatmaps import explain
from workers.media.faces import FaceDetector
from workers.pipeline import (
    Decoded,
    PipelineConfig,
    PipelineOutput,
    decode_video,
    member_crops,
    run_pipeline,
    tracked_detections,
)
from workers.resources import detector_batch_size, pipeline_config, resolve_device

TESTDATA = REPO_ROOT.parent / "shared" / "testdata"
SCORE_TOLERANCE = 1e-3
VARIANTS = ("naive", "verity")
PACKS_DIR = REPO_ROOT / "models" / "packs"
FULL_SIZE_DEFAULT = "seed-deepfakebench"


@dataclass(frozen=True)
class Clip:
    path: Path
    label: str | None = None

    @property
    def name(self) -> str:
        return self.path.name


@dataclass
class Run:
    """One variant on one clip, one repeat."""

    variant: str
    repeat: int
    stages: dict[str, float]
    total_s: float
    cpu_s: float  # this process's CPU seconds (all threads): steadier than wall time on a contended host
    frames: int
    faces: int
    verdict: str
    score: float | None
    per_model: dict[str, float | None]  # aggregated score per model on the worst track
    detect_downscale: float  # 1.0: MTCNN saw full-size frames, as the naive baseline's does
    keyframe_every: int  # 1: MTCNN searched every frame in full, as the naive baseline's does
    peak_rss_mb: float
    cuda_peak_mb: float | None


@dataclass
class MemberCost:
    """One member alone on one clip's crops, in its own batch size."""

    member: str
    format: str
    crop: str
    input_size: int
    crops: int
    s_per_crop: float  # median over the crops; a crop's time is its batch's over the batch's size
    peak_rss_growth_mb: float
    weights_mb: float  # parameters and buffers
    cuda_peak_growth_mb: float | None  # peak allocated over what was allocated before: activations, workspaces


@dataclass
class ClipReport:
    clip: Clip
    resolution: str = ""
    runs: list[Run] = field(default_factory=list)
    members: list[MemberCost] = field(default_factory=list)  # measured on the first clip whose faces were scored
    frame_max_abs_diff: int | None = None  # naive (OpenCV) vs Verity (PyAV) decoded pixels
    error: str | None = None

    def of(self, variant: str) -> list[Run]:
        return [r for r in self.runs if r.variant == variant]


# ---------------------------------------------------------------------------------------------- clips


def find_clips(specs: list[str] | None) -> list[Clip]:
    """Each spec a manifest CSV (``path,label,...`` relative to the CSV), a glob or a file; default: every test clip.
    Clips found by glob take their label from the test-data manifest when it lists them."""
    known = {c.path.resolve(): c.label for c in _manifest_clips(TESTDATA / "manifest.csv")}
    clips: list[Clip] = []
    for spec in specs or [str(TESTDATA / "manifest.csv")]:
        if spec.endswith(".csv"):
            clips += _manifest_clips(Path(spec))
            continue
        paths = sorted(Path(p) for p in glob.glob(spec, recursive=True))
        clips += [Clip(p, known.get(p.resolve())) for p in paths if p.is_file()]
    return clips


def _manifest_clips(manifest: Path) -> list[Clip]:
    if not manifest.is_file():
        return []
    with manifest.open(newline="", encoding="utf-8") as fh:
        return [Clip(manifest.parent / row["path"], row.get("label") or None) for row in csv.DictReader(fh)]


# ---------------------------------------------------------------------------------------------- models


def shipped_pack(spec: str) -> Path:
    """A shipped pack's short name (``dfdc-winner``: models/packs/dfdc-winner.yaml) or a manifest's path."""
    shipped = PACKS_DIR / f"{spec}.yaml"
    return shipped if shipped.is_file() else Path(spec)


def full_size_pack(manifest_path: Path, device: str, batch_size: int, seed: int = 0) -> LoadedPack:
    """Every member of the pack built from its format at full size with seeded random weights, in memory (no
    checkpoint files), fed as the real pack is: its input size, normalisation, output semantics and crop
    convention, the member's overrides included. TIMING ONLY: the scores mean nothing."""
    manifest = read_manifest(manifest_path)
    members: list[LoadedMember] = []
    seconds: dict[str, float] = {}
    for index, member in enumerate(manifest.members):
        start = time.perf_counter()
        fmt = get_format(member.format)
        torch.manual_seed(seed + index)
        model = build(fmt, member.input_size, member.options)
        detector = TorchDetector(
            member.name,
            model,
            member.input_size or fmt.input_size,
            member.normalisation or fmt.normalisation,
            fmt.output,
            device,
            batch_size,
            crop=crop_convention(member.crop) if member.crop else fmt.crop,
        )
        # No file, so nothing to pin or probe.
        timing_member = dataclasses.replace(member, checkpoint="(random weights)", sha256=None, check=None)
        members.append(LoadedMember(timing_member, detector))
        seconds[member.name] = time.perf_counter() - start
    pack_manifest = dataclasses.replace(
        manifest,
        name=f"{manifest.name} full-size random weights (TIMING ONLY)",
        version=f"{manifest.version}+random-{seed}",
        test_pack=True,
        description=f"{manifest.name}'s members from their formats with seeded random weights, for benchmarks.",
        weights_dir=None,
        members=tuple(m.manifest for m in members),
    )
    return LoadedPack(pack_manifest, members, seconds, {})


def compile_pack(pack: LoadedPack) -> None:
    # dynamic: a video's last, partial batch would otherwise compile the network once more.
    for member in pack.members:
        if isinstance(member.detector, TorchDetector):
            member.detector.model = cast(nn.Module, torch.compile(member.detector.model, dynamic=True))


# ---------------------------------------------------------------------------------------------- memory


def _vm_hwm_mb() -> float:
    match = re.search(r"VmHWM:\s+(\d+)\s+kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) / 1024 if match else float("nan")


def _reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM (Linux >= 4.0), so each run reports its own peak.
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


@contextlib.contextmanager
def measured(device: str) -> Iterator[dict[str, float | None]]:
    """Wall seconds, peak RSS and (on CUDA) peak allocated memory of the block; CUDA work is synchronised."""
    cuda = device.startswith("cuda")
    out: dict[str, float | None] = {}
    _reset_peak_rss()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start, cpu = time.perf_counter(), time.process_time()
    yield out
    if cuda:
        torch.cuda.synchronize()
    out["seconds"] = time.perf_counter() - start
    out["cpu_seconds"] = time.process_time() - cpu
    out["peak_rss_mb"] = _vm_hwm_mb()
    out["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None


def member_costs(pack: LoadedPack, output: PipelineOutput, device: str) -> list[MemberCost]:
    """Each member run alone on the crops the pipeline fed it (the same tracks, conventions and sizes), batch by
    batch in its own batch size: seconds per crop, peak RSS and CUDA memory growth while it runs, its weights.
    Empty when no face was scored; a member that failed in the pipeline is left out."""
    scored = {row.model for row in output.frame_rows}
    if not scored:
        return []
    crops = member_crops(output.frames, tracked_detections(output.faces), pack)
    costs: list[MemberCost] = []
    for member in pack.members:
        detector = member.detector
        # Only a torch network has a batch size and weights to weigh.
        if member.manifest.name not in scored or not isinstance(detector, TorchDetector):
            continue
        fed = crops[detector.crop.name, detector.input_size]
        per_crop: list[float] = []
        with measured(device) as stats:
            rss_before = _vm_hwm_mb()  # the peak was just reset: this is the resident size now
            cuda_before = torch.cuda.memory_allocated() / 2**20 if device.startswith("cuda") else 0.0
            for start in range(0, len(fed), detector.batch_size):
                batch = fed[start : start + detector.batch_size]
                began = time.perf_counter()
                detector.predict(batch)  # returns scores on the host, so CUDA work is finished
                per_crop += [(time.perf_counter() - began) / len(batch)] * len(batch)
        cuda_peak = stats["cuda_peak_mb"]
        tensors = [*detector.model.parameters(), *detector.model.buffers()]
        costs.append(
            MemberCost(
                member=member.manifest.name,
                format=member.manifest.format,
                crop=detector.crop.name,
                input_size=detector.input_size,
                crops=len(fed),
                s_per_crop=_median(per_crop),
                peak_rss_growth_mb=float(stats["peak_rss_mb"] or 0.0) - rss_before,
                weights_mb=sum(t.numel() * t.element_size() for t in tensors) / 2**20,
                cuda_peak_growth_mb=None if cuda_peak is None else cuda_peak - cuda_before,
            )
        )
    return costs


# ---------------------------------------------------------------------------------------------- storage


class StorageRoundTrip:
    """A job's database + storage work against real services: S3 put + get of the clip (moto_server on
    loopback), then the result row and its frame scores inserted into a scratch Postgres database."""

    def __init__(self, pg_admin_url: str) -> None:
        import boto3
        from sqlalchemy.orm import sessionmaker

        from db.session import make_engine

        self._services = contextlib.ExitStack()
        try:
            self._tmp = Path(self._services.enter_context(tempfile.TemporaryDirectory(prefix="verity-bench-")))
            endpoint = self._services.enter_context(moto_s3())
            url = self._services.enter_context(scratch_database(pg_admin_url, f"verity_bench_{os.getpid()}"))
            self._s3 = boto3.client(
                "s3",
                endpoint_url=endpoint,
                region_name="us-east-1",
                aws_access_key_id="bench",
                aws_secret_access_key="bench",
            )
            self._bucket = "verity-bench"
            self._s3.create_bucket(Bucket=self._bucket)
            engine = make_engine(sqlalchemy_url(url))
            self._services.callback(engine.dispose)  # before the database is dropped
            self._sessions = sessionmaker(bind=engine, expire_on_commit=False)
        except BaseException:
            self._services.close()
            raise

    def __call__(self, path: Path, output: PipelineOutput) -> float:
        from sqlalchemy import insert

        from core.vocabulary import JobStatus
        from db.models import FrameScore, Job, Result

        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()  # the API hashes while streaming: not timed here
        key = f"uploads/{uuid.uuid4()}"
        start = time.perf_counter()
        with path.open("rb") as fh:
            self._s3.upload_fileobj(fh, self._bucket, key)
        self._s3.download_file(self._bucket, key, str(self._tmp / "input"))
        with self._sessions() as session, session.begin():
            job = Job(
                tenant="bench",
                input_key=key,
                sha256=sha256,
                size_bytes=path.stat().st_size,
                status=JobStatus.SUCCEEDED.value,
            )
            session.add(job)
            session.flush()
            session.add(Result(job_id=job.id, attempt=1, **output.result.columns()))
            if output.frame_rows:
                session.execute(insert(FrameScore), [{"job_id": job.id, **r.columns()} for r in output.frame_rows])
        seconds = time.perf_counter() - start
        self._s3.delete_object(Bucket=self._bucket, Key=key)
        return seconds

    def close(self) -> None:
        self._services.close()


# ---------------------------------------------------------------------------------------------- runs


def _run(variant: str, repeat: int, result: JobResult | NaiveResult, stats: dict[str, float | None]) -> Run:
    stages = {k: float(v) for k, v in result.timings.items() if k != "total"}
    # The seed has no detection plan: full-size frames, every one searched in full.
    detection = result.tracks.detection if isinstance(result, JobResult) else None
    return Run(
        variant=variant,
        repeat=repeat,
        stages=stages,
        total_s=float(stats["seconds"] or 0.0),
        cpu_s=float(stats["cpu_seconds"] or 0.0),
        frames=result.frames_sampled,
        faces=result.faces_found,
        verdict=result.verdict.value,
        score=result.score,
        per_model={name: m.aggregated for name, m in result.per_model.items()},
        detect_downscale=1.0 if detection is None else detection.downscale,
        keyframe_every=1 if detection is None or detection.keyframe_every is None else detection.keyframe_every,
        peak_rss_mb=float(stats["peak_rss_mb"] or 0.0),
        cuda_peak_mb=stats["cuda_peak_mb"],
    )


@dataclass
class Bench:
    faces: FaceDetector
    pack: LoadedPack
    config: PipelineConfig
    device: str
    naive_mtcnn: Any | None  # facenet MTCNN, None with --no-naive
    storage: StorageRoundTrip | None
    # --explain: every Verity run also makes this many heatmaps per member (its "explain" stage), stored here
    explain_frames: int = 0
    heatmap_store: ObjectStore | None = None

    def verity(self, clip: Clip, repeat: int) -> tuple[Run, PipelineOutput]:
        with measured(self.device) as stats:
            output = run_pipeline(clip.path, self.faces, self.pack, self.config)
            if self.explain_frames and self.heatmap_store is not None:
                prefix = f"heatmaps/bench-{clip.name}-{repeat}"
                output.result = explain(output, self.pack, self.explain_frames, self.heatmap_store, prefix)
        run = _run("verity", repeat, output.result, stats)
        if self.storage is not None:
            run.stages["storage"] = self.storage(clip.path, output)
            run.total_s += run.stages["storage"]
        return run, output

    def naive(self, clip: Clip, repeat: int) -> tuple[Run, list[np.ndarray]]:
        with measured(self.device) as stats:
            out = run_naive(clip.path, self.naive_mtcnn, self.pack, self.config)
        return _run("naive", repeat, out.result, stats), [f.image for f in out.frames]


def _frame_diff(a: list[np.ndarray], b: list[np.ndarray]) -> int | None:
    if len(a) != len(b) or any(x.shape != y.shape for x, y in zip(a, b, strict=True)):
        return None
    return max((int(np.abs(x.astype(np.int16) - y).max()) for x, y in zip(a, b, strict=True)), default=0)


def bench_clip(
    bench: Bench, clip: Clip, repeats: int, first: int, log: TextIO, profile_members: bool = False
) -> ClipReport:
    """``profile_members``: after the first Verity run that scored faces, measure each member alone on its crops."""
    report = ClipReport(clip)
    try:
        for repeat in range(repeats):
            order = VARIANTS if (first + repeat) % 2 == 0 else VARIANTS[::-1]  # alternate who goes first
            verity_frames: list[np.ndarray] = []
            naive_frames: list[np.ndarray] = []
            for variant in order:
                if variant == "verity":
                    run, output = bench.verity(clip, repeat)
                    verity_frames = [f.image for f in output.frames]
                    if (video := output.result.video) is not None:
                        report.resolution = f"{video.width}x{video.height}"
                    if profile_members and repeat == 0:
                        report.members = member_costs(bench.pack, output, bench.device)
                elif bench.naive_mtcnn is not None:
                    run, naive_frames = bench.naive(clip, repeat)
                else:
                    continue
                report.runs.append(run)
            _share_storage(report, repeat)
            if naive_frames and repeat == 0:
                report.frame_max_abs_diff = _frame_diff(naive_frames, verity_frames)
            _log_repeat(report, repeat, log)
    except MediaError as exc:
        report.error = f"{exc.code}: {exc}"
        print(f"  {clip.name}: {report.error}", file=log)
    return report


def _share_storage(report: ClipReport, repeat: int) -> None:
    """The naive run gets the storage round trip Verity's run of the same repeat measured: identical work."""
    runs = {r.variant: r for r in report.runs if r.repeat == repeat}
    if "naive" in runs and "storage" in runs.get("verity", runs["naive"]).stages:
        seconds = runs["verity"].stages["storage"]
        runs["naive"].stages["storage"] = seconds
        runs["naive"].total_s += seconds


def _log_repeat(report: ClipReport, repeat: int, log: TextIO) -> None:
    runs = {r.variant: r for r in report.runs if r.repeat == repeat}
    parts = [f"{v} {r.total_s:6.2f}s (cpu {r.cpu_s:6.2f}s) {r.verdict}" for v, r in runs.items()]
    if len(runs) == 2:
        parts.append(f"ratio {runs['naive'].total_s / runs['verity'].total_s:4.1f}x")
        parts.append(f"cpu ratio {runs['naive'].cpu_s / runs['verity'].cpu_s:4.1f}x")
    print(f"  {report.clip.name:<36} #{repeat}  " + "  ".join(parts), file=log, flush=True)


# ---------------------------------------------------------------------------------------------- summary


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _per_clip_median(report: ClipReport, variant: str, stage: str | None) -> float | None:
    runs = report.of(variant)
    if not runs:
        return None
    return _median([r.total_s if stage is None else r.stages.get(stage, 0.0) for r in runs])


def stage_names(reports: list[ClipReport]) -> list[str]:
    order = ["probe", "decode", "faces", "tracks", "signals", "crops"]
    seen = {s for rep in reports for r in rep.runs for s in r.stages}
    models = sorted(s for s in seen if s.startswith("model:"))
    return [s for s in order if s in seen] + models + [s for s in ("fusion", "explain", "storage") if s in seen]


def summarise(reports: list[ClipReport]) -> dict[str, Any]:
    ok = [r for r in reports if r.error is None and r.runs]
    variants = [v for v in VARIANTS if any(rep.of(v) for rep in ok)]
    n = len(ok)
    stages: dict[str, dict[str, float]] = {}
    for stage in [*stage_names(ok), "total"]:
        row: dict[str, float] = {}
        for v in variants:
            key = None if stage == "total" else stage
            row[v] = sum(_per_clip_median(rep, v, key) or 0.0 for rep in ok) / max(n, 1)
        if "naive" in row and row.get("verity"):
            row["ratio"] = row["naive"] / row["verity"]
        stages[stage] = row
    for row in stages.values():
        if "verity" in row and stages["total"].get("verity"):
            row["verity_share"] = row["verity"] / stages["total"]["verity"]
    overall: dict[str, dict[str, float | None]] = {}
    for v in variants:
        totals = [_per_clip_median(rep, v, None) or 0.0 for rep in ok]
        frames = sum(rep.of(v)[0].frames for rep in ok)
        cuda = [r.cuda_peak_mb for rep in ok for r in rep.of(v) if r.cuda_peak_mb is not None]
        overall[v] = {
            "median_s_per_video": _median(totals),
            "mean_s_per_video": sum(totals) / max(n, 1),
            "cpu_s_per_video": sum(_median([r.cpu_s for r in rep.of(v)]) for rep in ok) / max(n, 1),
            "frames_per_s": frames / sum(totals) if sum(totals) else None,
            "videos_per_min": 60 * n / sum(totals) if sum(totals) else None,
            "peak_rss_mb": max((r.peak_rss_mb for rep in ok for r in rep.of(v)), default=0.0),
            "cuda_peak_mb": max(cuda) if cuda else None,
        }
    first = next((rep for rep in ok if rep.members), None)
    members = {"clip": first.clip.name, "rows": [dataclasses.asdict(c) for c in first.members]} if first else None
    return {"clips": n, "stages": stages, "overall": overall, "verdicts": compare_verdicts(ok), "members": members}


def compare_verdicts(reports: list[ClipReport]) -> list[dict[str, Any]]:
    rows = []
    for rep in reports:
        naive, verity = rep.of("naive"), rep.of("verity")
        if not naive or not verity:
            continue
        a, b = naive[0], verity[0]
        diffs = [
            abs(x - y)
            for name in set(a.per_model) | set(b.per_model)
            if (x := a.per_model.get(name)) is not None and (y := b.per_model.get(name)) is not None
        ]
        if a.score is not None and b.score is not None:
            diffs.append(abs(a.score - b.score))
        rows.append(
            {
                "clip": rep.clip.name,
                "label": rep.clip.label,
                "naive": a.verdict,
                "verity": b.verdict,
                "same_verdict": a.verdict == b.verdict,
                "same_computation": b.detect_downscale == 1.0 and b.keyframe_every == 1,
                "detect_downscale": b.detect_downscale,
                "keyframe_every": b.keyframe_every,
                "faces": [a.faces, b.faces],
                "max_score_diff": max(diffs) if diffs else 0.0,
                "frame_max_abs_diff": rep.frame_max_abs_diff,
            }
        )
    return rows


def _fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None or value != value else format(value, spec)


def print_summary(summary: dict[str, Any], out: TextIO) -> None:
    stages, overall = summary["stages"], summary["overall"]
    variants = list(overall)
    print(f"\nper stage, mean seconds per video over {summary['clips']} clips (median of repeats per clip)", file=out)
    header = f"{'stage':<28}" + "".join(f"{v:>10}" for v in variants)
    if len(variants) == 2:
        header += f"{'naive/verity':>14}"
    print(header + f"{'verity share':>14}", file=out)
    for stage, row in stages.items():
        line = f"{stage:<28}" + "".join(f"{_fmt(row.get(v)):>10}" for v in variants)
        if len(variants) == 2:
            line += f"{_fmt(row.get('ratio'), '.1f') + 'x':>14}"
        print(line + f"{_fmt(100 * row['verity_share'] if 'verity_share' in row else None, '.1f') + '%':>14}", file=out)
    if "verity_share" in stages.get("signals", {}):
        # Issue 15's budget for the forensic signals (workers/forensics): under 25 % of a job's time.
        print(f"forensic signals: {100 * stages['signals']['verity_share']:.1f}% of Verity's time per video", file=out)
    if summary["members"]:
        print_members(summary["members"], stages, out)
    print(f"\n{'':<28}" + "".join(f"{v:>12}" for v in variants), file=out)
    for key, spec in (
        ("median_s_per_video", ".3f"),
        ("mean_s_per_video", ".3f"),
        ("cpu_s_per_video", ".3f"),
        ("frames_per_s", ".2f"),
        ("videos_per_min", ".2f"),
        ("peak_rss_mb", ".0f"),
        ("cuda_peak_mb", ".0f"),
    ):
        print(f"{key:<28}" + "".join(f"{_fmt(overall[v][key], spec):>12}" for v in variants), file=out)
    if len(variants) < 2:
        return
    ratio = overall["naive"]["median_s_per_video"] / overall["verity"]["median_s_per_video"]
    cpu = overall["naive"]["cpu_s_per_video"] / overall["verity"]["cpu_s_per_video"]
    print(
        f"{'end to end naive/verity':<28}{stages['total']['ratio']:>11.1f}x (mean)  {ratio:.1f}x (median)"
        f"  {cpu:.1f}x (CPU seconds, pipeline only)",
        file=out,
    )
    rows = summary["verdicts"]
    print("\nverdicts, naive vs verity (scale: Verity's face-detection downscale; the naive one's is 1):", file=out)
    print(
        f"{'clip':<36}{'label':>6}{'naive':>10}{'verity':>10}{'faces':>10}{'scale':>7}{'max |d|':>10}{'px d':>6}",
        file=out,
    )
    for r in rows:
        # Scores can only be held to the tolerance where both computed the same thing (every frame searched in
        # full at full size): elsewhere the boxes, hence the crops, differ slightly.
        close = r["max_score_diff"] <= SCORE_TOLERANCE or not r["same_computation"]
        faces = "{}/{}".format(*r["faces"])
        print(
            f"{r['clip']:<36}{r['label'] or '':>6}{r['naive']:>10}{r['verity']:>10}{faces:>10}"
            f"{r['detect_downscale']:>7.3g}{r['max_score_diff']:>10.2e}{_fmt(r['frame_max_abs_diff'], 'd'):>6}"
            + ("" if r["same_verdict"] and close else "  <-"),
            file=out,
        )
    same = sum(r["same_verdict"] for r in rows)
    alike = [r for r in rows if r["same_computation"]]
    within = sum(r["max_score_diff"] <= SCORE_TOLERANCE for r in alike)
    print(
        f"same verdict: {same}/{len(rows)}; scores within {SCORE_TOLERANCE:g} where the computation is the same "
        f"(every frame searched at full size): {within}/{len(alike)}",
        file=out,
    )


def print_members(members: dict[str, Any], stages: dict[str, dict[str, float]], out: TextIO) -> None:
    print(
        f"\nper member, alone on the crops the pipeline fed it from {members['clip']}, in its batch size "
        "(share: its model stage's share of Verity's total, all clips)",
        file=out,
    )
    print(
        f"{'member':<16}{'format':<30}{'crop':<16}{'size':>5}{'crops':>6}{'s/crop':>9}{'RSS +MB':>9}"
        f"{'weights MB':>11}{'CUDA +MB':>9}{'share':>8}",
        file=out,
    )
    for r in members["rows"]:
        share = stages.get(f"model:{r['member']}", {}).get("verity_share")
        print(
            f"{r['member']:<16}{r['format']:<30}{r['crop']:<16}{r['input_size']:>5}{r['crops']:>6}"
            f"{r['s_per_crop']:>9.3f}{r['peak_rss_growth_mb']:>9.0f}{r['weights_mb']:>11.0f}"
            f"{_fmt(r['cuda_peak_growth_mb'], '.0f'):>9}{_fmt(None if share is None else 100 * share, '.1f') + '%':>8}",
            file=out,
        )


# ---------------------------------------------------------------------------------------------- throughput


def throughput(bench: Bench, clips: list[Clip], prefetch: bool) -> dict[str, float]:
    """Verity over every clip in a row, optionally decoding the next clip in a thread during inference."""
    config = bench.config
    with measured(bench.device) as stats, ThreadPoolExecutor(max_workers=1) as pool:
        upcoming: Future[Decoded] | None = None
        for i, clip in enumerate(clips):
            try:
                decoded = upcoming.result() if upcoming is not None else decode_video(clip.path, config)
            except MediaError:
                decoded = None
            upcoming = pool.submit(decode_video, clips[i + 1].path, config) if prefetch and i + 1 < len(clips) else None
            if decoded is not None:
                run_pipeline(clip.path, bench.faces, bench.pack, config, decoded=decoded)
    seconds = float(stats["seconds"] or 0.0)
    return {"seconds": seconds, "videos_per_min": 60 * len(clips) / seconds}


# ---------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--clips", nargs="+", help="manifest CSVs, globs or files (default: every clip of ../shared/testdata)"
    )
    p.add_argument("--limit", type=int, help="only the first N clips")
    p.add_argument("--frames", type=int, default=32, help="frames sampled per video (default 32)")
    p.add_argument("--repeat", type=int, default=1, help="runs per clip and variant; medians are reported")
    p.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    packs = p.add_mutually_exclusive_group()
    packs.add_argument("--pack", type=Path, help="pack manifest (default: VERITY_PACK, the MesoNet pack)")
    packs.add_argument(
        "--full-size-pack",
        nargs="?",
        const=FULL_SIZE_DEFAULT,
        metavar="PACK",
        help=f"time PACK (a shipped pack's name: {', '.join(sorted(p.stem for p in PACKS_DIR.glob('*.yaml')))}; or a "
        f"manifest path; default {FULL_SIZE_DEFAULT}) with every member built at full size from its format with "
        "random weights: no checkpoint files needed, TIMING ONLY",
    )
    p.add_argument("--downscale", type=float, help="face-detection downscale for every clip (VERITY_FACE_DOWNSCALE)")
    p.add_argument(
        "--face-short-side",
        type=int,
        help=f"detect faces at this short side at most (default {PipelineConfig.face_short_side}; 0: full size)",
    )
    p.add_argument(
        "--keyframe-every",
        type=int,
        help="MTCNN searches every Nth sampled frame in full, the rest near those faces (default: "
        "VERITY_FACE_KEYFRAME_EVERY; 1: every frame, the naive baseline's computation)",
    )
    p.add_argument("--face-batch", type=int, help="frames per MTCNN call (default: per device, see workers.resources)")
    p.add_argument("--detector-batch", type=int, help="crops per detector call (default: per device)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: the CPUs this process may use)")
    p.add_argument("--compile", action="store_true", help="torch.compile every detector (off by default)")
    p.add_argument("--no-naive", action="store_true", help="Verity only")
    p.add_argument(
        "--explain",
        type=int,
        nargs="?",
        const=3,
        default=0,
        metavar="N",
        help="also make N heatmaps per member (3), as an explain=true job does: its own 'explain' stage",
    )
    p.add_argument("--no-storage", action="store_true", help="skip the S3 + Postgres round trip")
    p.add_argument("--no-throughput", action="store_true", help="skip the multi-video prefetch comparison")
    p.add_argument("--pg", default=DEFAULT_PG_ADMIN, help="Postgres admin URL for the scratch database")
    p.add_argument("--json", type=Path, help="write every run and the summary here")
    return p.parse_args(argv)


def _machine(device: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "unset (spinning)"),
        "device": device,
        "load_avg": os.getloadavg(),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name()
    return info


def main(argv: list[str] | None = None, out: TextIO = sys.stdout) -> dict[str, Any]:
    args = parse_args(argv)
    settings = load_settings()
    device = resolve_device(args.device)
    # One intra-op thread per usable CPU: more oversubscribes a shared host, fewer leaves cores idle.
    torch.set_num_threads(args.threads or len(os.sched_getaffinity(0)))
    config = dataclasses.replace(pipeline_config(settings, device), max_frames=args.frames)
    if args.downscale is not None:
        config = dataclasses.replace(config, face_downscale=args.downscale)
    if args.face_short_side is not None:
        config = dataclasses.replace(config, face_short_side=args.face_short_side or None)
    if args.face_batch:
        config = dataclasses.replace(config, face_batch_size=args.face_batch)
    if args.keyframe_every:
        config = dataclasses.replace(config, face_keyframe_every=args.keyframe_every)
    batch = args.detector_batch or detector_batch_size(settings, device)
    clips = find_clips(args.clips)[: args.limit]
    if not clips:
        raise SystemExit(f"no clips found for {args.clips or [str(TESTDATA / 'manifest.csv')]}")
    if args.full_size_pack:
        pack = full_size_pack(shipped_pack(args.full_size_pack), device, batch)
    else:
        pack = load_pack(args.pack or settings.pack_manifest, settings.weights_dir, device, batch)
    if args.compile:
        compile_pack(pack)
    storage = None if args.no_storage else StorageRoundTrip(args.pg)
    bench = Bench(FaceDetector(device), pack, config, device, None if args.no_naive else seed_mtcnn(device), storage)
    if args.explain:
        heatmaps = Path(tempfile.mkdtemp(prefix="verity-bench-heatmaps-"))
        bench = dataclasses.replace(bench, explain_frames=args.explain, heatmap_store=LocalFolderStore(heatmaps))
        print(f"heatmap PNGs go to {heatmaps} (left there to look at)", file=out)
    command = "python -m tools.bench " + " ".join(argv if argv is not None else sys.argv[1:])
    print(command, file=out)
    print(
        f"{len(clips)} clips, {args.frames} frames, {args.repeat} repeat(s), device {device}, "
        f"{torch.get_num_threads()} torch threads, OMP_WAIT_POLICY {os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
        f"pack {pack.manifest.name} ({len(pack.members)} detectors), "
        f"faces: {config.face_batch_size} frames per call, downscale {config.face_downscale}, short side "
        f"{config.face_short_side or 'full'}, keyframe every {config.face_keyframe_every}; {batch} crops per detector "
        f"call; storage {'on' if storage else 'off'}",
        file=out,
        flush=True,
    )
    try:
        _warm_up(bench, clips[0])
        reports: list[ClipReport] = []
        for i, clip in enumerate(clips):
            # Each member's own costs once: on the first clip whose faces reached the detectors.
            profile = not any(rep.members for rep in reports)
            reports.append(bench_clip(bench, clip, args.repeat, i, out, profile_members=profile))
        summary = summarise(reports)
        if len(clips) > 1 and not args.no_throughput:
            summary["throughput"] = {
                "sequential": throughput(bench, clips, prefetch=False),
                "prefetch_next_decode": throughput(bench, clips, prefetch=True),
            }
    finally:
        if storage is not None:
            storage.close()
    print_summary(summary, out)
    if "throughput" in summary:
        seq, pre = summary["throughput"]["sequential"], summary["throughput"]["prefetch_next_decode"]
        print(
            f"\nmulti-video loop (Verity, no storage): sequential {seq['videos_per_min']:.2f} videos/min, "
            f"decoding the next video during inference {pre['videos_per_min']:.2f} videos/min "
            f"({seq['seconds'] / pre['seconds']:.2f}x)",
            file=out,
        )
    document = {
        "command": command,
        "machine": _machine(device),
        "config": {
            "frames": args.frames,
            "repeat": args.repeat,
            "pack": f"{pack.manifest.name}@{pack.manifest.version}",
            "face_downscale": config.face_downscale,
            "face_short_side": config.face_short_side,
            "face_keyframe_every": config.face_keyframe_every,
            "detector_batch_size": batch,
            "face_batch_size": config.face_batch_size,
            "compile": args.compile,
            "storage": storage is not None,
            "explain_frames": args.explain,
        },
        "summary": summary,
        "clips": [
            {
                "clip": str(rep.clip.path),
                "label": rep.clip.label,
                "resolution": rep.resolution,
                "error": rep.error,
                "frame_max_abs_diff": rep.frame_max_abs_diff,
                "runs": [dataclasses.asdict(r) for r in rep.runs],
            }
            for rep in reports
        ],
    }
    if args.json:
        args.json.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    return document


def _warm_up(bench: Bench, clip: Clip) -> None:
    """One short untimed run of each variant: first calls pay for thread pools and kernel selection."""
    # No more frames than the measured runs take: a full-size pack's large members make each crop count.
    short_config = dataclasses.replace(bench.config, max_frames=min(4, bench.config.max_frames))
    short = dataclasses.replace(bench, config=short_config, storage=None)
    with contextlib.suppress(MediaError):
        short.verity(clip, -1)
        if bench.naive_mtcnn is not None:
            short.naive(clip, -1)


if __name__ == "__main__":
    main()
