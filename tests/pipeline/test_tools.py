"""The local tools (verity-scan, verity-evaluate, the timeline plot) and the pipeline end to end on real clips.

Needs ../shared/testdata beside the repo (skips without it); runs MTCNN on CPU, so frame counts are kept small.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from core.plots import timeline_figure, timeline_png
from core.results import FrameCounts
from models.pack import LoadedPack, load_pack
from models.testpack import TINY_MEMBERS, write_test_pack
from tools import evaluate, scan
from workers.media.faces import FaceDetector
from workers.pipeline import PipelineConfig, decode_video, run_pipeline

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def clip(relative: str) -> Path:
    path = TESTDATA / "videos" / relative
    if not path.is_file():
        pytest.skip(f"test clip {path} is absent (expected ../shared/testdata beside the repo)")
    return path


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # load_settings() keeps a generated webhook secret under VERITY_HOME: keep it out of the checkout.
    monkeypatch.setenv("VERITY_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector("cpu")


@pytest.fixture(scope="module")
def test_pack_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_test_pack(tmp_path_factory.mktemp("testpack"))


@pytest.fixture(scope="module")
def test_pack(test_pack_yaml: Path) -> LoadedPack:
    return load_pack(test_pack_yaml, device="cpu")


def _rows(models: list[str], tracks: list[int], frames: int) -> Iterator[dict[str, Any]]:
    for track in tracks:
        for model_index, model in enumerate(models):
            for i in range(frames):
                yield {
                    "frame_index": i * 5,
                    "timestamp_s": i * 0.2,
                    "track_id": track,
                    "model": model,
                    "score": (i + model_index + track) % 10 / 10,
                }


def test_timeline_draws_one_line_per_model_and_track_plus_thresholds() -> None:
    fig = timeline_figure(list(_rows(["a", "b"], [0, 3], 6)), 0.35, 0.65, "synthetic")
    ax = fig.axes[0]
    labels = [str(line.get_label()) for line in ax.get_lines()]
    assert sorted(labels) == sorted(
        ["a · track 0", "b · track 0", "a · track 3", "b · track 3", "T_low 0.35", "T_high 0.65"]
    )
    styles = {line.get_label(): line.get_linestyle() for line in ax.get_lines()}
    assert styles["a · track 0"] != styles["a · track 3"]  # tracks differ by line style
    assert [np.asarray(line.get_xdata()).size for line in ax.get_lines()][:4] == [6, 6, 6, 6]


def test_timeline_png_is_a_png_even_without_faces() -> None:
    assert timeline_png(list(_rows(["meso4", "mesoinception"], [0], 4)), 0.35, 0.65, "t").startswith(PNG_MAGIC)
    assert timeline_png([], 0.35, 0.65, "no face").startswith(PNG_MAGIC)


def test_a_single_track_is_labelled_by_model_alone() -> None:
    ax = timeline_figure(list(_rows(["m"], [0], 2)), 0.3, 0.7, "t").axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["m", "T_high 0.7", "T_low 0.3"]


def test_scan_prints_tables_and_writes_the_timeline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = clip("fake/sberswap_elon.mp4")
    png = tmp_path / "elon.png"
    assert scan.main([str(video), "--frames", "8", "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert "aggregator" in out and "aggregated" in out and "calibrated" in out
    assert "meso4_df" in out and "mesoinception_df" in out
    assert "fused" in out and "first" in out  # the per-track table
    assert "verdict: " in out and "REAL < 0.35 <= UNCERTAIN <= 0.65 < FAKE" in out
    assert "TEST-ONLY" not in out
    assert png.read_bytes().startswith(PNG_MAGIC)


def test_scan_refuses_a_non_video_with_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clip("fake/sberswap_elon.mp4")  # the default pack's weights live in the test data too
    bogus = tmp_path / "bogus.mp4"
    bogus.write_bytes(b"this is not a video" * 100)
    assert scan.main([str(bogus), "--png", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.split(":")[0] in {"UNSUPPORTED_MEDIA_TYPE", "CORRUPT_MEDIA"}
    assert not (tmp_path / "x.png").exists()


def test_scan_with_the_test_pack_warns_loudly(
    tmp_path: Path, test_pack_yaml: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    video = clip("fake/sberswap_mark.mp4")
    assert (
        scan.main(
            [str(video), "--pack", str(test_pack_yaml), "--frames", "4", "--json", "--png", str(tmp_path / "t.png")]
        )
        == 0
    )
    captured = capsys.readouterr()
    assert "TEST-ONLY PACK" in captured.err
    result = json.loads(captured.out)
    assert result["test_pack"] is True and len(result["per_model"]) == len(TINY_MEMBERS)


def test_evaluate_reports_auc_and_confusion(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clips = [
        ("fake/sberswap_elon.mp4", "FAKE"),
        ("fake/sberswap_mark.mp4", "FAKE"),
        ("real/sberswap_dance.mp4", "REAL"),
        ("real/sberswap_orig_webp.mp4", "REAL"),
    ]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\n" + "".join(f"{clip(p)},{label}\n" for p, label in clips))
    report_path = tmp_path / "eval.json"
    assert evaluate.main(["--manifest", str(manifest), "--frames", "4", "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "ROC AUC fused score: " in out and "ROC AUC meso4_df: " in out
    assert "confusion matrix at weighted_average thresholds" in out
    assert "UNCERTAIN" in out and "NO_FACE" in out and "TPR" in out and "FPR" in out
    report = json.loads(report_path.read_text())
    assert [r["label"] for r in report["rows"]] == ["FAKE", "FAKE", "REAL", "REAL"]
    assert all(set(r["per_model"]) == {"meso4_df", "mesoinception_df"} for r in report["rows"])
    summary = report["summary"]
    assert summary["scored"] == 4 and summary["auc"] is not None
    assert sum(sum(row.values()) for row in summary["confusion"].values()) == 4


def test_summary_leaves_no_face_out_of_auc_and_rates() -> None:
    def row(label: str, verdict: str, score: float | None) -> dict[str, Any]:
        return {"label": label, "verdict": verdict, "score": score, "per_model": {"m": score} if score else {}}

    rows = [
        row("FAKE", "FAKE", 0.9),
        row("FAKE", "UNCERTAIN", 0.5),
        row("FAKE", "NO_FACE", None),
        row("REAL", "REAL", 0.1),
        row("REAL", "FAKE", 0.7),
        row("REAL", "ERROR", None),
    ]
    s = evaluate.summarise(rows, ["m"])
    # Pairs (fake, real): 0.9>0.1, 0.9>0.7, 0.5>0.1, 0.5<0.7 → 3 of 4.
    assert s["auc"] == pytest.approx(0.75) and s["auc_per_model"]["m"] == pytest.approx(0.75)
    assert (s["clips"], s["scored"], s["no_face"], s["errors"]) == (6, 4, 1, 1)
    none = {"NOT_APPLICABLE": 0}
    assert s["confusion"]["FAKE"] == {"REAL": 0, "UNCERTAIN": 1, "FAKE": 1, "NO_FACE": 1, **none, "ERROR": 0}
    assert s["confusion"]["REAL"] == {"REAL": 1, "UNCERTAIN": 0, "FAKE": 1, "NO_FACE": 0, **none, "ERROR": 1}
    assert (s["tpr"], s["fpr"], s["uncertain_rate"]) == (0.5, 0.5, 0.25)


def test_every_test_pack_architecture_scores_a_real_clip(faces: FaceDetector, test_pack: LoadedPack) -> None:
    out = run_pipeline(clip("fake/sberswap_khabenskii.mp4"), faces, test_pack, PipelineConfig(max_frames=6))
    result = out.result
    assert result.test_pack is True and "TEST-ONLY" in (result.model_pack or "")
    assert {m.manifest.format for m in test_pack.members} == {m.format for m in TINY_MEMBERS}
    assert len(result.per_model) == len(TINY_MEMBERS) == 6
    for name, m in result.per_model.items():
        assert m.error is None, name
        assert m.aggregated is not None and 0.0 <= m.aggregated <= 1.0 and m.frames > 0, name
    assert result.verdict in {"REAL", "UNCERTAIN", "FAKE"}
    assert {r.model for r in out.frame_rows} == set(result.per_model)


def _write_faceless_video(path: Path, seconds: float = 2.0, fps: int = 10) -> None:
    rng = np.random.default_rng(0)
    gradient = np.linspace(0, 200, 320, dtype=np.float32)[None, :, None]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        for i in range(int(seconds * fps)):
            noise = rng.normal(0, 12, (240, 320, 3)).astype(np.float32)
            image = np.clip(gradient + noise + i * 2, 0, 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_a_clip_without_faces_abstains(tmp_path: Path, faces: FaceDetector, test_pack: LoadedPack) -> None:
    video = tmp_path / "noface.mp4"
    _write_faceless_video(video)
    result = run_pipeline(video, faces, test_pack, PipelineConfig(max_frames=8)).result
    assert result.verdict == "NO_FACE"
    assert result.score is None and result.per_model == {} and result.tracks.tracks == ()
    assert result.frames_sampled == 8
    assert result.video is not None and result.video.frames == FrameCounts(8, 8, 0)


def test_frames_that_did_not_decode_are_recorded_in_the_result(
    tmp_path: Path, faces: FaceDetector, test_pack: LoadedPack
) -> None:
    # As a stream broken off mid-way decodes: the last two sampled frames never arrive.
    video = tmp_path / "noface.mp4"
    _write_faceless_video(video)
    config = PipelineConfig(max_frames=8)
    full = decode_video(video, config)
    lost = tuple(f.index for f in full.frames[-2:])
    short = dataclasses.replace(full, frames=full.frames[:-2], missing=lost)
    result = run_pipeline(video, faces, test_pack, config, decoded=short).result
    assert result.frames_sampled == 6
    assert result.video is not None and result.video.frames == FrameCounts(8, 6, 0, lost)


def test_the_crowd_clip_yields_several_tracks(faces: FaceDetector, test_pack: LoadedPack) -> None:
    # 16, not 8: at 8 samples (0.52 s apart) these small, moving faces rarely overlap IoU >= 0.3 between
    # samples and link into only 2 tracks of >= 3 detections; at 16 they give 12.
    out = run_pipeline(clip("real/facenet_crowd.mp4"), faces, test_pack, PipelineConfig(max_frames=16))
    tracks = out.result.tracks.tracks
    assert len(tracks) >= 3
    assert all(len(t.detections) >= 3 for t in tracks)
    assert {r.track_id for r in out.frame_rows} == {t.track_id for t in tracks}
