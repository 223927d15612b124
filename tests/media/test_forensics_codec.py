"""Codec facts from the demuxed packets, and every signal of a job at once (workers.forensics.compute)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image

from core.media.decode import decode_frames
from core.media.probe import probe_video
from core.signals import SIGNAL_NAMES
from tests.support.forensic_frames import sighting, textured
from tests.support.videos import write_video
from workers.forensics.codec import NAMES, measure_codec
from workers.forensics.compute import compute_signals
from workers.forensics.readings import Readings

FACE_SIGNALS = ("quality.blur_face", "forensics.noise_mismatch", "artefacts.hf_share", "scope.flat_share")


def test_bits_per_pixel_and_keyframe_spacing_come_from_the_packets(tmp_path: Path) -> None:
    video = tmp_path / "gop.mp4"
    write_video(video, frames=20, size=64, options={"g": "5", "preset": "ultrafast"})
    info = probe_video(video)
    readings = Readings()
    measure_codec(video, info, readings)
    assert readings.values["codec.keyframe_interval"] == 5.0  # keyframes 0, 5, 10, 15
    assert 0 < readings.values["quality.bitrate_bpp"] < 1
    assert readings.values["codec.ffmpeg_written"] == 1.0  # PyAV writes through FFmpeg's muxer


def test_a_still_image_has_no_codec_facts(tmp_path: Path) -> None:
    image = tmp_path / "still.png"
    Image.fromarray(textured()).save(image)
    readings = Readings()
    measure_codec(image, probe_video(image), readings)
    for name in NAMES:
        assert math.isnan(readings.values[name]) and "png" in readings.reasons[name]


def test_without_a_face_the_face_signals_are_nan_with_a_reason(tmp_path: Path) -> None:
    video = tmp_path / "noface.mp4"
    write_video(video, frames=6, size=64)
    info = probe_video(video)
    frames = decode_frames(video, range(6)).frames
    report = compute_signals(video, info, frames, [])
    assert set(report.values) == set(SIGNAL_NAMES)
    assert report.values["quality.blur_frame"] >= 0 and report.values["codec.keyframe_interval"] > 0
    for name in (*FACE_SIGNALS, "forensics.flicker", "temporal.flow_oddity"):
        assert math.isnan(report.values[name]) and report.reasons[name], name
    assert report.seconds >= 0 and report.scope is None


def test_one_frame_gives_the_face_signals_but_nothing_temporal(tmp_path: Path) -> None:
    image = tmp_path / "face.png"
    pixels = textured(noise=3.0)
    Image.fromarray(pixels).save(image)
    info = probe_video(image)
    frames = decode_frames(image, [0]).frames
    report = compute_signals(image, info, frames, [sighting(np.asarray(frames[0].image))])
    for name in FACE_SIGNALS:
        assert math.isfinite(report.values[name]), name
    for name in ("forensics.flicker", "temporal.flow_oddity"):
        assert math.isnan(report.values[name]) and "frame after it" in report.reasons[name]
