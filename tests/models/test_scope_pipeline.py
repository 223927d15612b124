"""The forensic signals and the scope check inside the pipeline, with the test pack on real clips.

Needs ../shared/testdata beside the repo (skips without it); runs MTCNN on CPU, so frame counts are kept small.
"""

from __future__ import annotations

import math
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from core.media.decode import read_frames
from core.results import JobResult
from core.scope import ScopeReason
from core.signals import SIGNAL_NAMES
from core.vocabulary import Verdict
from models.pack import LoadedPack, load_pack
from models.testpack import write_test_pack
from tests.support.videos import write_video
from workers.media.faces import FaceDetector
from workers.pipeline import PipelineConfig, decode_video, run_pipeline

TESTDATA = Path(__file__).resolve().parents[2].parent / "shared" / "testdata"


def clip(relative: str) -> Path:
    path = TESTDATA / "videos" / relative
    if not path.is_file():
        pytest.skip(f"test clip {path} is absent (expected ../shared/testdata beside the repo)")
    return path


@pytest.fixture(scope="module")
def faces() -> FaceDetector:
    return FaceDetector("cpu")


@pytest.fixture(scope="module")
def test_pack(tmp_path_factory: pytest.TempPathFactory) -> LoadedPack:
    return load_pack(write_test_pack(tmp_path_factory.mktemp("testpack")), device="cpu")


def test_the_frame_after_some_sampled_frames_is_decoded_beside_them() -> None:
    decoded = decode_video(clip("real/liveportrait_d18.mp4"), PipelineConfig(max_frames=8))
    sampled = [f.index for f in decoded.frames]
    assert len(sampled) == 8 and decoded.missing == ()
    assert decoded.after and set(decoded.after) <= set(sampled)
    assert all(after.index == index + 1 for index, after in decoded.after.items())


@pytest.mark.parametrize("video", ["real/liveportrait_d18.mp4", "real/ffpp_519.mp4"])
def test_signals_are_stored_with_the_result_and_real_faces_are_in_scope(
    video: str, faces: FaceDetector, test_pack: LoadedPack
) -> None:
    result = run_pipeline(clip(video), faces, test_pack, PipelineConfig(max_frames=8)).result
    signals = result.signals
    assert signals is not None
    assert set(signals.values) == set(SIGNAL_NAMES)
    assert signals.scope is None and result.verdict is not Verdict.NOT_APPLICABLE
    assert signals.reading is not None  # no calibration fused the signals: their rule reading rides beside
    assert math.isfinite(signals.values["forensics.noise_mismatch"]) and math.isfinite(signals.values["scope.face_px"])
    assert all(math.isnan(signals.values[name]) for name in signals.reasons)
    assert result.timings["signals"] == pytest.approx(signals.seconds, abs=0.05)
    stored = JobResult.from_columns(result.columns()).signals
    assert stored is not None and stored.scope is None
    assert stored.to_json() == signals.to_json()
    assert result.view()["signals"] == signals.to_json()


def test_faces_too_small_for_every_member_are_not_judged(
    faces: FaceDetector, test_pack: LoadedPack, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The test pack's smallest member takes 64 px crops; demanding less upscaling than any face here allows
    # makes every face too small, as 40 px faces would be for a 224-380 px pack.
    monkeypatch.setattr("core.scope.MAX_UPSCALE", 0.1)
    result = run_pipeline(clip("real/liveportrait_d18.mp4"), faces, test_pack, PipelineConfig(max_frames=8)).result
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.signals is not None and result.signals.scope == ScopeReason.FACES_TOO_SMALL.value
    assert result.score is not None and result.per_model  # the scores stay, no REAL or FAKE is claimed
    assert result.view()["verdict"] == "NOT_APPLICABLE"


def test_a_clip_without_faces_still_gets_the_signals_that_need_none(
    faces: FaceDetector, test_pack: LoadedPack, tmp_path: Path
) -> None:
    video = tmp_path / "noface.mp4"
    write_video(video, frames=12, size=96)
    result = run_pipeline(video, faces, test_pack, PipelineConfig(max_frames=8)).result
    assert result.verdict is Verdict.NO_FACE
    assert result.signals is not None and result.signals.scope is None
    assert math.isfinite(result.signals.values["quality.blur_frame"])
    assert result.signals.reasons["quality.blur_face"] == "no face"
    assert "signals" in result.timings
    # Nothing judged by the face models: the signals' own low-confidence reading is stored, and it never says FAKE.
    reading = result.signals.reading
    assert reading is not None and reading.confidence == "low" and reading.verdict is not Verdict.FAKE
    assert JobResult.from_columns(result.columns()).signals == result.signals


def _posterised(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """A cel-shaded look: smoothed into flat patches, then a few levels per channel."""
    smooth = np.asarray(image)
    for _ in range(3):
        smooth = np.asarray(cv2.bilateralFilter(smooth, 9, 60, 60))
    smooth = np.asarray(cv2.pyrMeanShiftFiltering(smooth, 12, 30))
    return ((smooth // 40) * 40 + 20).astype(np.uint8)


def _cartoon_clip(source: Path, target: Path, frames: int = 12) -> Path:
    """``source``'s first frames, posterised and encoded with H.264 at high quality (as a cartoon would be)."""
    images = [_posterised(f.image) for f in read_frames(source, range(0, 2 * frames, 2))]
    with av.open(str(target), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=15, options={"crf": "18"})
        height, width = images[0].shape[:2]
        stream.height, stream.width, stream.pix_fmt = height - height % 2, width - width % 2, "yuv420p"
        for image in images:
            picture = np.ascontiguousarray(image[: stream.height, : stream.width])
            out.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        out.mux(stream.encode())
    return target


def test_a_cartoon_face_is_not_judged(faces: FaceDetector, test_pack: LoadedPack, tmp_path: Path) -> None:
    # MTCNN still finds the posterised face; its flat fills put it out of scope.
    video = _cartoon_clip(clip("real/liveportrait_d18.mp4"), tmp_path / "cartoon.mp4")
    result = run_pipeline(video, faces, test_pack, PipelineConfig(max_frames=8)).result
    assert result.faces_found > 0
    assert result.signals is not None and result.signals.values["scope.flat_share"] > 0.6
    assert result.verdict is Verdict.NOT_APPLICABLE
    assert result.signals.scope == ScopeReason.NON_PHOTOGRAPHIC.value
