"""Pydantic models of POST /v1/admin/simulate (api/simulate.py): the request and the typed report it returns, as
api/schemas.py documents the other routes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.streams.simulate import WHOLE_FILE
from core.streams.strategy import DEFAULT_FPS, DEFAULT_WINDOW, MAX_FPS, MAX_WINDOW, StreamStrategy
from core.vocabulary import Label, StreamAveraging, Verdict

MAX_STRATEGIES = 8
MAX_LABEL_ROWS = 1000  # ~60 bytes a row: about what the 64 KiB JSON body cap holds
MAX_TIMELINES = 20


class SimulateStrategyIn(BaseModel):
    """One strategy to replay: "window" (Option A), "per_frame" (Option B) or "whole_file" (today's scoring).
    Omitted fields take the request's fps and window and the stream strategy's defaults."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="A label for the table.")
    kind: Literal["window", "per_frame", "whole_file"]
    fps: float | None = Field(None, gt=0, le=MAX_FPS, description="Frames per second (default: the request's).")
    window: int | None = Field(None, ge=1, le=MAX_WINDOW, description="Frames (default: the request's).")
    aggregators: dict[str, str] | None = Field(None, description="Member -> aggregator spec (Option A).")
    averaging: StreamAveraging | None = Field(None, description="Option B: mean over the window, or ema.")
    ema_alpha: float | None = Field(None, gt=0, le=1)
    t_low: float | None = Field(None, ge=0, le=1, description="With t_high; omit both for the calibrated ones.")
    t_high: float | None = Field(None, ge=0, le=1)
    hysteresis: float | None = Field(None, ge=0, le=20, description="Logit margin before a verdict changes.")
    min_frames: int | None = Field(None, ge=1, le=MAX_WINDOW, description="Frames with a face before deciding.")

    def stream(self, fps: float, window: int) -> StreamStrategy | None:
        """The stream strategy (None for the whole file), ``fps`` and ``window`` where it gives none; ValueError
        naming the field on a bad combination."""
        if self.kind == WHOLE_FILE:
            return None
        fields = {"fps": fps, "window": window, **self.model_dump(exclude={"name"}, exclude_none=True, mode="json")}
        return StreamStrategy.from_mapping(fields)


class SimulateLabelIn(BaseModel):
    """A labels CSV row: one of job_id, filename or sha256, and REAL or FAKE."""

    model_config = ConfigDict(extra="forbid")
    label: Literal[Label.REAL, Label.FAKE]
    job_id: str | None = Field(None, max_length=64)
    filename: str | None = Field(None, max_length=255)
    sha256: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _one_key(self) -> SimulateLabelIn:
        if sum(v is not None for v in (self.job_id, self.filename, self.sha256)) != 1:
            raise ValueError("each label row names exactly one of job_id, filename or sha256")
        return self


class SimulateFitIn(BaseModel):
    """Fit Option B thresholds on the same videos (in-sample) for a target FPR, as recalibration fits Option A's."""

    model_config = ConfigDict(extra="forbid")
    strategy: str | None = Field(None, description="Which per_frame strategy (by name); default the first one.")
    target_fpr: float = Field(0.05, gt=0, lt=1)
    uncertain_band: float = Field(0.05, ge=0, lt=1)
    save: bool = Field(False, description="Store them in the calibration version simulated under.")


class SimulateIn(BaseModel):
    """Every field is optional: by default Option A (window 27), Option B (mean) and the whole file at 2 fps, on
    the tenant's jobs labelled by moderators, under the active calibration version."""

    model_config = ConfigDict(extra="forbid")
    strategies: list[SimulateStrategyIn] | None = Field(None, min_length=1, max_length=MAX_STRATEGIES)
    fps: float = Field(DEFAULT_FPS, gt=0, le=MAX_FPS, description="Frame rate of strategies that give none.")
    window: int = Field(DEFAULT_WINDOW, ge=1, le=MAX_WINDOW, description="Window of strategies that give none.")
    labels: list[SimulateLabelIn] | None = Field(
        None, max_length=MAX_LABEL_ROWS, description="Labels (a CSV's rows) instead of moderator feedback."
    )
    calibration_version: str | None = Field(
        None, max_length=64, description="A version, 'none' for no calibration, or omit for the active one."
    )
    per_frame_ms: float | None = Field(
        None, ge=0, le=60_000, description="Measured cost of one frame; default: estimated from the stored jobs."
    )
    timelines: int = Field(4, ge=0, le=MAX_TIMELINES, description="Videos whose decision timelines to return.")
    max_videos: int = Field(500, ge=1, le=5000, description="Newest labelled jobs to replay.")
    fit_per_frame: SimulateFitIn | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> SimulateIn:
        names = [s.name for s in self.strategies or []]
        if len(set(names)) != len(names):
            raise ValueError(f"strategy names must be unique, got {names}")
        return self


class LatencyView(BaseModel):
    fps: float
    frame_budget_ms: float = Field(description="Time between frames at this fps.")
    per_frame_ms: float | None = Field(description="Measured or estimated cost of one frame.")
    limit_ms: float
    warnings: list[str]


class StrategyResultView(BaseModel):
    name: str
    kind: str
    strategy: dict[str, object] | None = Field(description="The stream strategy (null: the whole file).")
    fps: float
    t_low: float
    t_high: float
    videos: int
    real: int
    fake: int
    tpr: float | None = Field(description="Fakes whose final verdict is FAKE.")
    tnr: float | None = Field(description="Reals whose final verdict is REAL.")
    fpr: float | None = Field(description="Reals whose final verdict is FAKE.")
    fpr_any_time: float | None = Field(description="Reals called FAKE at any moment of the stream.")
    uncertain_rate: float
    undecided_rate: float = Field(description="Videos never decided (e.g. shorter than the window).")
    mean_first_decision_s: float | None
    mean_stable_s: float | None = Field(description="Mean stream time of the last verdict change.")
    mean_flips: float
    max_flips: int
    videos_over_flip_limit: int
    latency: LatencyView


class TimelinePointView(BaseModel):
    t: float
    score: float | None
    verdict: Verdict | None


class OutcomeView(BaseModel):
    strategy: str
    final: Verdict | None
    first_decision_s: float | None
    stable_s: float | None
    flips: int
    points: list[TimelinePointView]


class VideoTimelineView(BaseModel):
    video_id: str
    name: str | None
    label: Literal[Label.REAL, Label.FAKE]
    outcomes: list[OutcomeView]


class PerFrameThresholdsView(BaseModel):
    """Option B thresholds for one averaging, with what they were fitted for and on."""

    averaging: StreamAveraging
    t_low: float
    t_high: float
    target_fpr: float
    uncertain_band: float
    window: int
    ema_alpha: float
    videos: int
    real: int
    fake: int


class PerFrameFitView(BaseModel):
    strategy: str
    thresholds: PerFrameThresholdsView
    saved_to: str | None = Field(description="The calibration version they were stored in, if saved.")
    in_sample: bool = Field(description="True: the report's metrics for it are on the videos it was fitted on.")


class SimulationView(BaseModel):
    videos: int
    real: int
    fake: int
    flip_limit: int = Field(description="Seed 000's target: fewer flips than this per video.")
    label_source: Literal["feedback", "labels"]
    calibration_version: str | None
    without_frame_scores: int = Field(description="Labelled jobs left out: no stored frame scores.")
    unmatched_labels: list[str] = Field(description="Label rows that named no job of this tenant.")
    strategies: list[StrategyResultView]
    timelines: list[VideoTimelineView]
    fit: PerFrameFitView | None
