"""One live stream as the worker holding it sees it: the rolling decider, the face tracker's recent frames, and
what each scored frame writes (its row, its faces' frame scores, the decision, the webhook on a change).

Taking a session over rebuilds the decider by replaying its stored frames (core.streams.rolling is a pure function
of the frames pushed); track ids then start afresh, which only labels the faces of the frames still to come.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from core import payloads
from core.results import Box, FrameRow, JobResult, Tracks
from core.scoring.fusion import NotEnoughModels
from core.scoring.verdict import CalibrationState, FusionSpec, MemberSpec, score_video
from core.streams.channel import DecisionEvent, QueuedFrame
from core.streams.rolling import RollingDecider, StreamDecision, StreamFrame, most_fake_face
from core.streams.strategy import StreamStrategy
from core.vocabulary import MediaKind, Verdict
from db.streams import ScoredFrame, StoredFrame
from workers.media.crops import Box as FaceBox
from workers.media.tracks import link_tracks
from workers.streams.scorer import ScoredImage

# Frames of history the tracker links a new frame's faces against: a face lost for longer starts a new track.
TRACK_HISTORY = 8
IDENTITY = CalibrationState(None, {}, {}, frozenset())


@dataclass(frozen=True)
class Ensemble:
    """What every session of a worker decides with: the pack's members and fusion, the active calibration."""

    members: tuple[MemberSpec, ...]
    fusion: FusionSpec
    calibration: CalibrationState
    model_pack: str
    test_pack: bool
    # The active version's fitted Option B thresholds by averaging: used when a per_frame strategy names none.
    per_frame: Mapping[str, tuple[float, float]] = field(default_factory=dict)


class HeldSession:
    def __init__(self, stream_id: uuid.UUID, strategy: StreamStrategy, updates: str, ensemble: Ensemble) -> None:
        self.id = stream_id
        self.strategy = strategy
        self.updates = updates
        self.ensemble = ensemble
        self.decider = RollingDecider(
            strategy,
            ensemble.members,
            ensemble.fusion,
            ensemble.calibration,
            ensemble.per_frame.get(strategy.averaging.value),
        )
        self.last: StreamDecision | None = None
        self.last_seq = 0
        self.faces_found = 0
        self.window: deque[dict[str, float]] = deque(maxlen=strategy.window)
        self._history: deque[tuple[int, list[FaceBox]]] = deque(maxlen=TRACK_HISTORY)
        self._track_ids: dict[tuple[int, int], int] = {}
        self._next_track = 0

    def replay(self, stored: list[StoredFrame]) -> None:
        """The decider as it was after the stored frames (a session taken over from a worker that died)."""
        for frame in stored:
            self._push(frame.seq, StreamFrame(frame.t, frame.scores))
            self.faces_found += frame.faces

    def _push(self, seq: int, frame: StreamFrame) -> StreamDecision:
        self.last = self.decider.push(frame)
        self.last_seq = seq
        if frame.scores:
            self.window.append(dict(frame.scores))
        return self.last

    def _tracks(self, seq: int, boxes: list[FaceBox]) -> list[int]:
        """Each face's track id: the files' tracker (link_tracks) over the recent frames, ids kept across calls."""
        self._history.append((seq, boxes))
        history = list(self._history)
        ids: dict[int, int] = {}
        for track in link_tracks([frame_boxes for _s, frame_boxes in history]):
            seen = (self._track_ids.get((history[p][0], d)) for p, d in track)
            known = next((tid for tid in seen if tid is not None), None)
            if known is None:
                known = self._next_track
                self._next_track += 1
            for position, det in track:
                self._track_ids[history[position][0], det] = known
                if position == len(history) - 1:
                    ids[det] = known
        oldest = history[0][0]
        self._track_ids = {k: v for k, v in self._track_ids.items() if k[0] >= oldest}
        return [ids[d] for d in range(len(boxes))]

    def apply(self, queued: QueuedFrame, image: ScoredImage) -> tuple[ScoredFrame, StreamDecision]:
        track_ids = self._tracks(queued.seq, [face.box for face in image.faces])
        boxes = [Box(*(round(v, 1) for v in face.box)) for face in image.faces]
        by_track = {tid: face.scores for tid, face in zip(track_ids, image.faces, strict=True) if face.scores}
        e = self.ensemble
        chosen = most_fake_face(by_track, e.members, e.fusion, e.calibration)
        decision = self._push(queued.seq, StreamFrame(queued.t, chosen))
        self.faces_found += len(image.faces)
        rows = [
            FrameRow(queued.seq, queued.t, tid, box, face.prob, name, score)
            for tid, box, face in zip(track_ids, boxes, image.faces, strict=True)
            for name, score in face.scores.items()
        ]
        scored = ScoredFrame(
            seq=queued.seq,
            t=queued.t,
            faces=len(image.faces),
            scores=dict(chosen),
            score=decision.score,
            verdict=None if decision.verdict is None else decision.verdict.value,
            changed=decision.changed,
            face_rows=rows,
        )
        return scored, decision

    def event(self, decision: StreamDecision, seq: int, sent_at: float | None, dropped: int) -> DecisionEvent:
        return {
            "type": "decision",
            "stream_id": str(self.id),
            "seq": seq,
            "t": decision.t,
            "frames_seen": decision.frames_seen,
            "frames_with_face": decision.frames_with_face,
            "frames_dropped": dropped,
            "score": decision.score,
            "verdict": None if decision.verdict is None else decision.verdict.value,
            "changed": decision.changed,
            "t_low": self.decider.t_low,
            "t_high": self.decider.t_high,
            "sent_at": sent_at,
            "job_id": None,
        }

    def webhook(self, decision: StreamDecision, seq: int) -> dict[str, object]:
        return payloads.stream_decision(
            self.id,
            {
                "verdict": None if decision.verdict is None else decision.verdict.value,
                "score": decision.score,
                "thresholds": {"t_low": self.decider.t_low, "t_high": self.decider.t_high},
                "seq": seq,
                "t": decision.t,
                "frames_seen": decision.frames_seen,
                "frames_with_face": decision.frames_with_face,
            },
        )

    def final_event(self, dropped: int) -> DecisionEvent:
        last = self.last
        verdict = self.final_verdict()
        return {
            "type": "closed",
            "stream_id": str(self.id),
            "seq": self.last_seq,
            "t": None if last is None else last.t,
            "frames_seen": 0 if last is None else last.frames_seen,
            "frames_with_face": 0 if last is None else last.frames_with_face,
            "frames_dropped": dropped,
            "score": None if last is None else last.score,
            "verdict": verdict.value,
            "changed": False,
            "t_low": self.decider.t_low,
            "t_high": self.decider.t_high,
            "sent_at": None,
            "job_id": str(self.id),
        }

    def final_verdict(self) -> Verdict:
        """The last decision; NO_FACE when no frame had a face, UNCERTAIN when too few did for a decision."""
        last = self.last
        if last is None or last.frames_with_face == 0:
            return Verdict.NO_FACE
        return last.verdict or Verdict.UNCERTAIN

    def result(self) -> JobResult:
        """The stream's final result: the last decision, with each member's detail over the last window."""
        e = self.ensemble
        last = self.last
        with_face = 0 if last is None else last.frames_with_face
        per_model = {}
        if self.window:
            names = {m.name for m in e.members}
            scores = {n: {0: [f[n] for f in self.window if n in f]} for n in names}
            scores = {n: s for n, s in scores.items() if s[0]}
            failed = {n: "no score in the stream's last window" for n in names - set(scores)}
            try:
                per_model = dict(
                    score_video(scores, e.members, e.fusion, e.calibration, failed_models=failed).per_model
                )
            except (NotEnoughModels, ValueError):
                per_model = {}
        return JobResult(
            verdict=self.final_verdict(),
            score=None if last is None else last.score,
            raw_score=None,
            method=e.fusion.method,
            t_low=self.decider.t_low,
            t_high=self.decider.t_high,
            frames_sampled=0 if last is None else last.frames_seen,
            faces_found=self.faces_found,
            tracks=Tracks(with_face, None, None),
            per_model=per_model,
            model_pack=e.model_pack,
            test_pack=e.test_pack,
            calibration_version=e.calibration.version,
            media=MediaKind.STREAM,
        )
