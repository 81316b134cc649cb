"""People across a video's frames: tracked (:mod:`~rlepose.inference.tracking`) and their joints
smoothed by their own σ̂ (:mod:`~rlepose.inference.smoothing`).

``smooth``:

* ``"online"`` — each frame as it comes (cameras, streams): a Kalman filter per track, whose
  measurement noise for each joint in each frame is that joint's predicted error (the variance
  2b² of its Laplace scale b, ``PoseResult.sigma``);
* ``"offline"`` — after the last frame (files): the Rauch–Tung–Striebel smoother over each
  whole track, every frame corrected by the frames after it as well;
* ``"none"`` — tracks only.

The motion model's random acceleration is relative to the person's size: its standard deviation
is ``acceleration`` × √(box area) per frame², so near and far people are smoothed alike. A
smoothed person carries smoothed keypoints, ``sigma`` (the Laplace scale with the filter's
position variance, √(P/2)), the expected OKS recomputed from it, and joint confidences moved by
the same ratio as σ̂; box, score and ``track_id`` are the frame's own.

>>> video = TemporalPoses(spec, smooth="online")                                 # doctest: +SKIP
>>> for index, frame in enumerate(frames):                                      # doctest: +SKIP
...     people = video.add(index, predictor(frame))   # tracked and filtered, this frame's
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from rlepose.data.keypoints import KeypointSpec
from rlepose.evaluation.coco import expected_oks
from rlepose.inference.smoothing import OnlineKalman, measurement_variance, rts_smoother
from rlepose.inference.tracking import PoseTracker, TrackerConfig

__all__ = ["SMOOTHING", "DEFAULT_ACCELERATION", "TemporalPoses", "smooth_track"]

SMOOTHING = ("auto", "online", "offline", "none")
#: standard deviation of the random acceleration, per frame², in units of √(box area), for each
#: mode; what benchmarks/video_smoothing.py's tuning chose on rendered sequences apart from those
#: it reports (the shipped model, calibrated σ̂)
DEFAULT_ACCELERATION = {"online": 0.007, "offline": 0.015}


def _scale(person) -> float:
    return float(np.sqrt(max(person.bbox[2] * person.bbox[3], 1.0)))


def _smoothed(person, keypoints: np.ndarray, variance: np.ndarray, spec: KeypointSpec):
    """``person`` with filtered ``keypoints`` (K, 2) and position ``variance`` (K, 2) px²."""
    if person.sigma is None:
        return replace(person, keypoints=keypoints)
    sigma = np.sqrt(np.maximum(variance, 0.0) / 2)
    ratio = sigma.mean(-1) / np.maximum(np.asarray(person.sigma).mean(-1), 1e-12)
    confidence = 1 - (1 - np.asarray(person.joint_confidence, float)) * ratio
    believed = person.expected_oks
    if spec.sigmas:
        believed = float(expected_oks(sigma[None], np.array([person.bbox[2] * person.bbox[3]]),
                                      np.asarray(spec.sigmas, float))[0])
    return replace(person, keypoints=keypoints, sigma=sigma, joint_confidence=confidence.astype(np.float32),
                   expected_oks=believed)


def _measurement(person) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(person.keypoints, float)[:, :2]
    b = np.asarray(person.sigma, float) if person.sigma is not None else np.ones_like(z)
    return z, measurement_variance(b)


def smooth_track(people: list, frames: list[int], spec: KeypointSpec,
                 acceleration: float = DEFAULT_ACCELERATION["offline"], velocity_std: float = 10.0) -> list:
    """The RTS smoother over one track: ``people`` (its PoseResults) at frame indices ``frames``
    (increasing; gaps are predicted over) → the smoothed people, in the same order."""
    span = frames[-1] - frames[0] + 1
    k = len(people[0].keypoints)
    z, r = np.full((span, k, 2), np.nan), np.ones((span, k, 2))
    q = np.full(span, np.nan)
    for person, f in zip(people, frames):
        z[f - frames[0]], r[f - frames[0]] = _measurement(person)
        q[f - frames[0]] = (acceleration * _scale(person)) ** 2
    seen = np.flatnonzero(np.isfinite(q))
    q = np.interp(np.arange(span), seen, q[seen])  # the person's size carried over gaps
    means, variances = rts_smoother(z, r, q, velocity_std)
    return [_smoothed(p, means[f - frames[0]], variances[f - frames[0]], spec) for p, f in zip(people, frames)]


class TemporalPoses:
    """Tracks (and with ``smooth`` online or offline, smooths) the people of consecutive frames.

    :meth:`add` takes a frame's people (in order of frames) and returns them with ``track_id``
    set — filtered already when online. Offline, :meth:`finish` returns every frame's smoothed
    people once the last frame is in. ``acceleration``: see the module docstring (None: the
    mode's :data:`DEFAULT_ACCELERATION`)."""

    def __init__(self, spec: KeypointSpec, smooth: str = "online", acceleration: float | None = None,
                 tracker: TrackerConfig = TrackerConfig(), velocity_std: float = 10.0) -> None:
        if smooth not in ("online", "offline", "none"):
            raise ValueError(f"smooth must be online, offline or none here (auto is resolved by the caller), "
                             f"got {smooth!r}")
        if acceleration is None:
            acceleration = DEFAULT_ACCELERATION.get(smooth, 0.0)
        self.spec, self.smooth, self.acceleration, self.velocity_std = spec, smooth, acceleration, velocity_std
        self.tracker = PoseTracker(spec.sigmas, tracker)
        self.filters: dict[int, tuple[OnlineKalman, int]] = {}
        self.frames: dict[int, list] = {}  # frame → its (raw, tracked) people, kept for offline

    def add(self, frame: int, people: list) -> list:
        self.tracker.update(people, frame)
        if self.smooth == "offline":
            self.frames[frame] = people
        if self.smooth != "online":
            return people
        out = []
        for person in people:
            if person.track_id is None:
                out.append(person)
                continue
            kf, last = self.filters.get(person.track_id, (None, None))
            if kf is None:
                kf = OnlineKalman(0.0, self.velocity_std)
            kf.q = (self.acceleration * _scale(person)) ** 2
            for _ in range(frame - last - 1 if last is not None else 0):  # frames it was not seen
                kf.step(np.full((len(person.keypoints), 2), np.nan), np.ones((len(person.keypoints), 2)))
            z, r = _measurement(person)
            means, variances = kf.step(z, r)
            self.filters[person.track_id] = (kf, frame)
            out.append(_smoothed(person, means, variances, self.spec))
        return out

    def finish(self) -> dict[int, list]:
        """Offline: every frame's people, each track smoothed over all its frames (online and
        none: the frames as :meth:`add` returned them are final, so this is empty)."""
        if self.smooth != "offline":
            return {}
        tracks: dict[int, list[tuple[int, int]]] = {}
        for frame, people in self.frames.items():
            for i, p in enumerate(people):
                if p.track_id is not None:
                    tracks.setdefault(p.track_id, []).append((frame, i))
        out = {frame: list(people) for frame, people in self.frames.items()}
        for members in tracks.values():
            members.sort()
            smoothed = smooth_track([self.frames[f][i] for f, i in members], [f for f, _ in members], self.spec,
                                    self.acceleration, self.velocity_std)
            for (f, i), person in zip(members, smoothed):
                out[f][i] = person
        return out
