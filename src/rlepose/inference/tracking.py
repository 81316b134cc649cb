"""People tracked across video frames: every person gets a ``track_id`` that stays with them.

Per frame, each live track predicts where its person is now (its last pose moved by its last
velocity, the mean displacement of the box centre per frame, times the frames since it was
seen), and the frame's people are matched to the tracks by one assignment (the Hungarian
method, SciPy's ``linear_sum_assignment``) maximising the similarity

    s = ½·OKS(predicted pose, detected pose) + ½·IoU(predicted box, detected box)

(OKS with the keypoint set's constants and the detected box's area; a set without constants
counts every joint at 0.1). A pair is matched only when ``s ≥ min_similarity``. Then:

* a matched track takes the person (its id goes into ``PoseResult.track_id``);
* an unmatched person scoring at least ``min_score`` starts a new track (ids count up from 0,
  never reused, as PoseTrack numbers them); one scoring less gets no id (``track_id`` None);
* an unmatched track is *lost*: it keeps predicting and can be re-found by the same rule for
  ``max_lost`` frames, after which it ends.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlepose.inference.detectors import box_iou_xywh

__all__ = ["TrackerConfig", "PoseTracker"]


@dataclass(frozen=True)
class TrackerConfig:
    min_similarity: float = 0.2
    min_score: float = 0.0  # the lowest person score that starts a track
    max_lost: int = 30  # frames a lost track waits to be re-found (about a second at 30 fps)


@dataclass
class _Track:
    id: int
    keypoints: np.ndarray  # (K, 2) at the last frame it was seen
    box: np.ndarray  # (4,) x, y, w, h
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px per frame
    last_frame: int = 0

    def predicted(self, frame: int) -> tuple[np.ndarray, np.ndarray]:
        shift = self.velocity * (frame - self.last_frame)
        return self.keypoints + shift, self.box + np.concatenate([shift, [0.0, 0.0]])


class PoseTracker:
    """Gives the people of consecutive frames track ids: ``tracker.update(people, frame)`` sets
    ``track_id`` on each :class:`rlepose.inference.PoseResult` of that frame and returns the ids
    (None for a person not tracked). ``sigmas``: the keypoint set's OKS constants."""

    def __init__(self, sigmas, cfg: TrackerConfig = TrackerConfig()) -> None:
        self.cfg = cfg
        self.sigmas = np.asarray(sigmas, float) if len(sigmas) else None
        self.tracks: list[_Track] = []
        self.next_id = 0

    def _similarity(self, people, frame: int) -> np.ndarray:
        sim = np.zeros((len(self.tracks), len(people)))
        if not self.tracks or not people:
            return sim
        boxes = np.array([p.bbox for p in people], float)
        kps = np.stack([np.asarray(p.keypoints, float)[:, :2] for p in people])
        sigmas = self.sigmas if self.sigmas is not None else np.full(kps.shape[1], 0.1)
        variances = (2 * sigmas) ** 2
        areas = boxes[:, 2] * boxes[:, 3]
        for i, track in enumerate(self.tracks):
            pose, box = track.predicted(frame)
            d2 = ((kps - pose) ** 2).sum(-1)
            oks = np.exp(-d2 / variances / (2 * areas[:, None] + np.spacing(1))).mean(-1)
            sim[i] = 0.5 * oks + 0.5 * box_iou_xywh(box, boxes)[0]
        return sim

    def update(self, people: list, frame: int) -> list[int | None]:
        """Assign ids to ``people`` (this frame's :class:`PoseResult` s) at frame index ``frame``."""
        from scipy.optimize import linear_sum_assignment

        self.tracks = [t for t in self.tracks if frame - t.last_frame <= self.cfg.max_lost]
        sim = self._similarity(people, frame)
        ids: list[int | None] = [None] * len(people)
        matched_tracks = set()
        if sim.size:
            rows, cols = linear_sum_assignment(-sim)
            for r, c in zip(rows, cols):
                if sim[r, c] >= self.cfg.min_similarity:
                    ids[c] = r
                    matched_tracks.add(r)
        out: list[int | None] = [None] * len(people)
        for j, person in enumerate(people):
            box = np.asarray(person.bbox, float)
            kps = np.asarray(person.keypoints, float)[:, :2]
            if ids[j] is not None:
                track = self.tracks[ids[j]]
                gap = max(frame - track.last_frame, 1)
                centre = lambda b: b[:2] + b[2:] / 2  # noqa: E731
                track.velocity = (centre(box) - centre(track.box)) / gap
                track.keypoints, track.box, track.last_frame = kps, box, frame
                out[j] = track.id
            elif person.score >= self.cfg.min_score:
                self.tracks.append(_Track(self.next_id, kps, box, last_frame=frame))
                out[j] = self.next_id
                self.next_id += 1
            person.track_id = out[j]
        return out
