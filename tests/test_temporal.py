"""Video over time: the Kalman filter and RTS smoother against closed forms and the exact
Gaussian posterior, the One-Euro and Savitzky–Golay baselines against their definitions, the
tracker's rules, and the two together on people."""
import math

import numpy as np
import pytest

from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.evaluation.coco import expected_oks
from rlepose.inference.results import PoseResult
from rlepose.inference.smoothing import (OnlineKalman, kalman_filter, measurement_variance, one_euro, rts_smoother,
                                         savgol, steady_state_gain)
from rlepose.inference.temporal import TemporalPoses, smooth_track
from rlepose.inference.tracking import PoseTracker, TrackerConfig


def posterior(z, r, q, v0_std):
    """The exact posterior mean and variance of every position of a constant-velocity track
    (flat prior on the first position, N(0, v0²) on the velocity, N(0, q) on each frame's
    acceleration), by least squares over (p0, v0, a_0 … a_{T−2}): p_t = p0 + v0·t + Σ_{s<t}
    a_s (t − s − ½); frames where z is NaN have no measurement row. Written independently of
    the filter's recursion."""
    T = len(z)
    J = np.zeros((T, T + 1))
    for t in range(T):
        J[t, 0], J[t, 1] = 1.0, t
        for s in range(t):
            J[t, 2 + s] = t - s - 0.5
    seen = np.isfinite(z)
    rows = [J[seen] / np.sqrt(r[seen])[:, None], np.eye(T + 1)[1:2] / v0_std, np.eye(T + 1)[2:] / np.sqrt(q)]
    A = np.concatenate(rows)
    b = np.concatenate([z[seen] / np.sqrt(r[seen]), np.zeros(T)])
    cov = np.linalg.inv(A.T @ A)
    theta = cov @ A.T @ b
    return J @ theta, np.einsum("ti,ij,tj->t", J, cov, J)


def test_filter_and_smoother_equal_the_exact_gaussian_posterior():
    rng = np.random.default_rng(0)
    T, q, v0 = 12, 0.3, 5.0
    z = np.cumsum(rng.normal(1.0, 0.5, T))
    r = rng.uniform(0.2, 4.0, T)  # a different measurement noise every frame, as σ̂ gives
    smooth_m, smooth_v = rts_smoother(z[:, None, None], r[:, None, None], q, v0)
    filt_m, filt_v = kalman_filter(z[:, None, None], r[:, None, None], q, v0)
    m, v = posterior(z, r, q, v0)
    assert np.allclose(smooth_m[:, 0, 0], m, atol=1e-8) and np.allclose(smooth_v[:, 0, 0], v, atol=1e-8)
    for t in range(1, T):  # filtering = the posterior given the frames up to t
        mt, vt = posterior(z[: t + 1], r[: t + 1], q, v0)
        assert filt_m[t, 0, 0] == pytest.approx(mt[-1], abs=1e-8) and filt_v[t, 0, 0] == pytest.approx(vt[-1], abs=1e-8)
    # a gap (no measurement at frames 4 and 5) is the posterior without those rows
    gap = z.copy()
    gap[4:6] = np.nan
    smooth_gap, var_gap = rts_smoother(gap[:, None, None], r[:, None, None], q, v0)
    m, v = posterior(gap, r, q, v0)
    assert np.allclose(smooth_gap[:, 0, 0], m, atol=1e-8) and np.allclose(var_gap[:, 0, 0], v, atol=1e-8)


def test_gap_frames_follow_the_motion_model_exactly():
    """A straight track at constant velocity measured exactly except in a gap: the smoother puts
    the missing frames on the line."""
    z = 3.0 + 2.0 * np.arange(10.0)
    z_gap = z.copy()
    z_gap[4:7] = np.nan
    m, v = rts_smoother(z_gap[:, None, None], np.full((10, 1, 1), 1e-6), 0.01, 10.0)
    assert np.allclose(m[:, 0, 0], z, atol=1e-3) and (v[4:7, 0, 0] > v[3, 0, 0]).all()


def test_steady_state_gain_is_kalatas_closed_form():
    for q, r in ((0.1, 1.0), (1.0, 1.0), (4.0, 0.5)):
        kf = OnlineKalman(q, velocity_std=3.0)
        for _ in range(300):
            kf.step(np.zeros((1, 1)), np.full((1, 1), r))
        alpha, beta = steady_state_gain(q, r)
        # after an update the position variance is α·r and the covariance β·r
        assert kf.P[0, 0, 0, 0] == pytest.approx(alpha * r, rel=1e-9)
        assert kf.P[0, 0, 0, 1] == pytest.approx(beta * r, rel=1e-9)
    # a hand-worked first step: z0 = 0 sets (0, 0) with P = diag(r, 9); predicting adds F P Fᵀ + Q
    kf = OnlineKalman(1.0, velocity_std=3.0)
    kf.step(np.zeros((1, 1)), np.ones((1, 1)))
    x, p = kf.step(np.full((1, 1), 2.0), np.ones((1, 1)))
    a, b, d = 1 + 9 + 0.25, 9 + 0.5, 9 + 1.0  # predicted covariance
    assert x[0, 0] == pytest.approx(a / (a + 1) * 2.0) and p[0, 0] == pytest.approx(a * 1 / (a + 1))
    assert kf.m[0, 0, 1] == pytest.approx(b / (a + 1) * 2.0) and kf.P[0, 0, 1, 1] == pytest.approx(d - b * b / (a + 1))


def test_sigma_decides_whom_the_filter_believes():
    """The same outlier at frame 10: with a confident σ̂ the filter follows it, with a large σ̂
    (an occluded joint) it stays on the motion."""
    z = np.arange(20.0)
    z[10] += 15.0
    small, large = np.full(20, 0.5), np.full(20, 0.5)
    large[10] = 20.0
    follow, _ = kalman_filter(z[:, None, None], measurement_variance(small)[:, None, None], 0.05)
    ignore, _ = kalman_filter(z[:, None, None], measurement_variance(large)[:, None, None], 0.05)
    assert follow[10, 0, 0] - 10 > 5 and abs(ignore[10, 0, 0] - 10) < 0.5
    assert measurement_variance(np.array([2.0]), math.sqrt(2))[0] == pytest.approx(16.0)  # 2 (√2·2)²


def test_one_euro_without_speed_term_is_an_exponential_filter():
    fps, cutoff = 30.0, 2.0
    alpha = 1 / (1 + fps / (2 * math.pi * cutoff))
    z = np.ones((8, 1, 1))
    z[0] = 0.0
    out = one_euro(z, fps, min_cutoff=cutoff, beta=0.0)
    assert np.allclose(out[:, 0, 0], [0.0] + [1 - (1 - alpha) ** n for n in range(1, 8)])
    fast = one_euro(z, fps, min_cutoff=cutoff, beta=10.0)
    assert (fast[1:, 0, 0] > out[1:, 0, 0]).all()  # speed raises the cutoff: it lags less


def test_savgol_keeps_a_quadratic_and_fills_gaps():
    t = np.arange(15.0)
    z = (0.5 * t ** 2 - 3 * t + 2)[:, None, None] * np.ones((1, 2, 2))
    assert np.allclose(savgol(z, 7, 2), z)
    line = (2 * t - 1)[:, None, None] * np.ones((1, 2, 2))
    line_gap = line.copy()
    line_gap[5] = np.nan  # filled on the line first, so the window still sees a line
    out = savgol(line_gap, 7, 2)
    assert np.isnan(out[5]).all() and np.allclose(out[np.arange(15) != 5], line[np.arange(15) != 5])
    assert np.array_equal(savgol(z[:2], 7, 2), z[:2])  # too short for any window longer than the order


# -- tracking -------------------------------------------------------------------------------


def _person(x, y, score=0.9, k=17, size=60.0, sigma=1.0):
    base = np.stack([np.linspace(-10, 10, k), np.linspace(-25, 25, k)], 1)
    return PoseResult([x - size / 4, y - size / 2, size / 2, size], base + [x, y], np.full(k, 0.9, np.float32), score,
                      sigma=np.full((k, 2), sigma))


def test_tracks_keep_their_people_through_order_changes_gaps_and_low_scores():
    tracker = PoseTracker(COCO_KEYPOINTS.sigmas, TrackerConfig(max_lost=3, min_score=0.5))
    a, b = lambda t: _person(50 + 2 * t, 100), lambda t: _person(200 - 2 * t, 100)
    assert tracker.update([a(0), b(0)], 0) == [0, 1]
    assert tracker.update([b(1), a(1)], 1) == [1, 0]  # listed the other way round
    assert tracker.update([a(2)], 2) == [0]  # b not seen
    assert tracker.update([b(4), a(4)], 4) == [1, 0]  # b re-found where its motion put it
    assert [tracker.update([a(t)], t) for t in (5, 6, 7, 8)] == [[0]] * 4
    assert tracker.update([b(9), a(9)], 9) == [2, 0]  # b unseen for more than 3 frames: a new id
    assert tracker.update([_person(400, 300, score=0.2)], 10) == [None]  # too unsure to start a track
    people = [_person(300, 50)]
    tracker.update(people, 11)
    assert people[0].track_id == 3  # ids are never reused


# -- both, on people ------------------------------------------------------------------------


def test_online_and_offline_smoothing_run_the_filters_on_each_track():
    rng = np.random.default_rng(1)
    frames = [[_person(50 + 2 * t + rng.normal(0, 2), 100, sigma=rng.uniform(0.5, 3)),
               _person(200 - 1 * t, 90 + rng.normal(0, 2))] for t in range(12)]
    online = TemporalPoses(COCO_KEYPOINTS, "online", acceleration=0.02)
    live = [online.add(t, [PoseResult(**vars(p)) for p in people]) for t, people in enumerate(frames)]
    offline = TemporalPoses(COCO_KEYPOINTS, "offline", acceleration=0.02)
    for t, people in enumerate(frames):
        offline.add(t, [PoseResult(**vars(p)) for p in people])
    smoothed = offline.finish()
    z = np.stack([f[0].keypoints for f in frames])
    r = measurement_variance(np.stack([f[0].sigma for f in frames]))
    q = (0.02 * np.sqrt(30 * 60)) ** 2
    want_online, var_online = kalman_filter(z, r, q)
    want_offline, var_offline = rts_smoother(z, r, q)
    assert all(f[0].track_id == 0 and f[1].track_id == 1 for f in live)
    assert np.allclose(np.stack([f[0].keypoints for f in live]), want_online)
    assert np.allclose(np.stack([smoothed[t][0].keypoints for t in range(12)]), want_offline)
    assert np.allclose(np.stack([smoothed[t][0].sigma for t in range(12)]), np.sqrt(var_offline / 2))
    first = smoothed[5][0]  # its expected OKS is the one of its smoothed σ̂ and box
    want = expected_oks(first.sigma[None], np.array([first.bbox[2] * first.bbox[3]]), np.asarray(COCO_KEYPOINTS.sigmas))
    assert first.expected_oks == pytest.approx(float(want[0]))
    assert (np.stack([s[0].sigma for s in smoothed.values()]).mean() < np.stack([f[0].sigma for f in frames]).mean())
    again = smooth_track([f[0] for f in frames], list(range(12)), COCO_KEYPOINTS, acceleration=0.02)
    assert np.allclose(np.stack([p.keypoints for p in again]), want_offline)
    with pytest.raises(ValueError, match="online, offline or none"):
        TemporalPoses(COCO_KEYPOINTS, "auto")
