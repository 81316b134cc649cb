"""Temporal filters for a tracked person's joints, frame by frame.

A track is given as arrays over its frames: joint positions ``z`` (T, K, 2) pixels, NaN where
the person was not seen, and for the Kalman family the variance ``r`` (T, K, 2) px² of each
measurement. Every filter returns positions (T, K, 2); the Kalman family also their variances.

**Kalman filter and RTS smoother** (:func:`kalman_filter`, :func:`rts_smoother`,
:class:`OnlineKalman`). Each coordinate of each joint on its own, with the state (position,
velocity) and the discrete white-noise acceleration model (the acceleration is constant over a
frame interval and random, variance ``q`` px²/frame⁴)::

    x_{t+1} = F x_t + w,   F = [[1, 1], [0, 1]],   Q = q · [[1/4, 1/2], [1/2, 1]]
    z_t = x_t[0] + v_t,    v_t ~ N(0, r_t)

``r_t`` is where an RLE model's σ̂ enters: the measurement noise of that joint in that frame.
With Q a Laplace density of scale b = c·σ̂ (c = √2 for the official RLE form, 1 for MMPose's and
the printed Eq. 8; :func:`rlepose.losses.laplace_scale_per_sigma`), the variance is 2b²
(:func:`measurement_variance`). A blurred or occluded joint (large σ̂) then follows the motion
model, a confident one its measurement. The first measurement sets the position (its variance
``r``) with the velocity unknown (standard deviation ``velocity_std`` px/frame); frames without a
measurement are predicted only. The Rauch–Tung–Striebel smoother runs the filter forward and
corrects it backward with every later frame: offline (files), where the filter is online
(cameras). Position variances are returned, so σ̂ and the expected OKS can be re-derived from them.

**Baselines** used by ``benchmarks/video_smoothing.py``: the One-Euro filter (Casiez et al.,
CHI 2012; an adaptive low-pass, MMPose's former default) and a Savitzky–Golay window (SciPy's).
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["measurement_variance", "OnlineKalman", "kalman_filter", "rts_smoother", "one_euro", "savgol",
           "steady_state_gain"]


def measurement_variance(sigma_px: np.ndarray, scale_per_sigma: float = 1.0) -> np.ndarray:
    """The variance (px²) of a Laplace density of scale ``scale_per_sigma·σ̂``: 2·(c·σ̂)²."""
    return 2.0 * (scale_per_sigma * np.asarray(sigma_px, dtype=np.float64)) ** 2


def _predict(m: np.ndarray, P: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """One step of the motion model on means (..., 2) and covariances (..., 2, 2)."""
    m = np.stack([m[..., 0] + m[..., 1], m[..., 1]], -1)
    a, b, d = P[..., 0, 0], P[..., 0, 1], P[..., 1, 1]
    P = np.stack([np.stack([a + 2 * b + d + q / 4, b + d + q / 2], -1),
                  np.stack([b + d + q / 2, d + q], -1)], -2)
    return m, P


def _update(m: np.ndarray, P: np.ndarray, z: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Measurement update where ``z`` is finite (elsewhere the prediction is kept)."""
    seen = np.isfinite(z)
    a, b, d = P[..., 0, 0], P[..., 0, 1], P[..., 1, 1]
    s = a + r
    k0, k1 = a / s, b / s
    innovation = np.where(seen, z - m[..., 0], 0.0)
    m_new = np.stack([m[..., 0] + k0 * innovation, m[..., 1] + k1 * innovation], -1)
    P_new = np.stack([np.stack([a * r / s, b * r / s], -1), np.stack([b * r / s, d - b * b / s], -1)], -2)
    return np.where(seen[..., None], m_new, m), np.where(seen[..., None, None], P_new, P)


def _start(z: np.ndarray, r: np.ndarray, velocity_std: float) -> tuple[np.ndarray, np.ndarray]:
    m = np.stack([z, np.zeros_like(z)], -1)
    P = np.zeros(z.shape + (2, 2))
    P[..., 0, 0], P[..., 1, 1] = r, velocity_std ** 2
    return m, P


class OnlineKalman:
    """The Kalman filter of one track, a frame at a time (cameras, streams): ``step(z, r)``
    with ``z`` (K, 2) pixels (NaN: not seen) and ``r`` (K, 2) px² → filtered positions and
    position variances, both (K, 2) (NaN before the first measurement of a coordinate)."""

    def __init__(self, q: float, velocity_std: float = 10.0) -> None:
        self.q, self.velocity_std = q, velocity_std
        self.m: np.ndarray | None = None
        self.P: np.ndarray | None = None

    def step(self, z: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z, r = np.asarray(z, dtype=np.float64), np.asarray(r, dtype=np.float64)
        if self.m is None:
            self.m, self.P = _start(z, r, self.velocity_std)
            self.m[~np.isfinite(z)] = np.nan
        else:
            m, P = _predict(self.m, self.P, self.q)
            fresh = ~np.isfinite(m[..., 0]) & np.isfinite(z)  # first measurement of a coordinate
            m, P = _update(m, P, z, r)
            if fresh.any():
                m0, P0 = _start(z, r, self.velocity_std)
                m, P = np.where(fresh[..., None], m0, m), np.where(fresh[..., None, None], P0, P)
            self.m, self.P = m, P
        return self.m[..., 0].copy(), self.P[..., 0, 0].copy()


def kalman_filter(z: np.ndarray, r: np.ndarray, q: float | np.ndarray, velocity_std: float = 10.0,
                  _keep: bool = False):
    """The filter over a whole track: positions and position variances (T, K, 2), each frame
    using only the frames before it and itself (what :class:`OnlineKalman` gives live).
    ``q``: one acceleration variance, or one per frame (T,) for the step into that frame."""
    q = np.broadcast_to(np.asarray(q, dtype=np.float64), (len(z),))
    kf = OnlineKalman(float(q[0]), velocity_std)
    means, variances, states = [], [], []
    for t, (zt, rt) in enumerate(zip(np.asarray(z, dtype=np.float64), np.asarray(r, dtype=np.float64))):
        kf.q = float(q[t])
        x, p = kf.step(zt, rt)
        means.append(x)
        variances.append(p)
        if _keep:
            states.append((kf.m.copy(), kf.P.copy()))
    out = np.stack(means), np.stack(variances)
    return (*out, states) if _keep else out


def rts_smoother(z: np.ndarray, r: np.ndarray, q: float | np.ndarray,
                 velocity_std: float = 10.0) -> tuple[np.ndarray, np.ndarray]:
    """The Rauch–Tung–Striebel smoother over a whole track (offline): every frame's position
    and variance (T, K, 2) given all frames, past and future (``q`` as in :func:`kalman_filter`)."""
    q = np.broadcast_to(np.asarray(q, dtype=np.float64), (len(z),))
    _, _, states = kalman_filter(z, r, q, velocity_std, _keep=True)
    m_s, P_s = states[-1]
    means, variances = [m_s[..., 0]], [P_s[..., 0, 0]]
    for t in range(len(states) - 2, -1, -1):
        m, P = states[t]
        m_pred, P_pred = _predict(m, P, float(q[t + 1]))
        a, b, d = P_pred[..., 0, 0], P_pred[..., 0, 1], P_pred[..., 1, 1]
        det = a * d - b * b
        inv = np.stack([np.stack([d, -b], -1), np.stack([-b, a], -1)], -2) / det[..., None, None]
        PF = np.stack([np.stack([P[..., 0, 0] + P[..., 0, 1], P[..., 0, 1]], -1),
                       np.stack([P[..., 1, 0] + P[..., 1, 1], P[..., 1, 1]], -1)], -2)  # P Fᵀ
        C = PF @ inv
        valid = np.isfinite(m[..., 0]) & np.isfinite(m_s[..., 0])
        m_new = m + (C @ (m_s - m_pred)[..., None])[..., 0]
        P_new = P + C @ (P_s - P_pred) @ np.swapaxes(C, -1, -2)
        m_s = np.where(valid[..., None], m_new, m)
        P_s = np.where(valid[..., None, None], P_new, P)
        means.append(m_s[..., 0])
        variances.append(P_s[..., 0, 0])
    return np.stack(means[::-1]), np.stack(variances[::-1])


def steady_state_gain(q: float, r: float) -> tuple[float, float]:
    """The filter's steady-state gains (α, β) for constant noise, in closed form (Kalata's α-β
    filter: with the tracking index λ = √(q/r), α = −(λ² + 8λ − (λ + 4)√(λ² + 8λ))/8 and
    β = (λ² + 4λ − λ√(λ² + 8λ))/4)."""
    lam = math.sqrt(q / r)
    root = math.sqrt(lam * lam + 8 * lam)
    return -(lam * lam + 8 * lam - (lam + 4) * root) / 8, (lam * lam + 4 * lam - lam * root) / 4


def one_euro(z: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.0, d_cutoff: float = 1.0) -> np.ndarray:
    """The One-Euro filter on positions (T, K, 2): a first-order low-pass whose cutoff (Hz)
    rises with the filtered speed, ``min_cutoff + beta·|ẋ|`` (ẋ in px/s, itself low-passed at
    ``d_cutoff``). Frames without a measurement keep the last output (NaN before the first)."""
    z = np.asarray(z, dtype=np.float64)
    out = np.full_like(z, np.nan)
    x_hat = dx_hat = None
    elapsed = np.zeros(z.shape[1:])

    def alpha(cutoff, dt):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    for t, zt in enumerate(z):
        seen = np.isfinite(zt)
        if x_hat is None:
            x_hat, dx_hat = zt.copy(), np.zeros_like(zt)
            elapsed = np.zeros_like(zt)
        else:
            elapsed = elapsed + 1.0 / fps
            fresh = ~np.isfinite(x_hat) & seen
            dx = np.where(seen & ~fresh, (zt - x_hat) / elapsed, 0.0)
            dx_new = dx_hat + alpha(d_cutoff, elapsed) * (dx - dx_hat)
            cutoff = min_cutoff + beta * np.abs(dx_new)
            x_new = x_hat + alpha(cutoff, elapsed) * (zt - x_hat)
            x_hat = np.where(fresh, zt, np.where(seen, x_new, x_hat))
            dx_hat = np.where(seen & ~fresh, dx_new, dx_hat)
            elapsed = np.where(seen, 0.0, elapsed)
        out[t] = x_hat
    return out


def savgol(z: np.ndarray, window: int, order: int) -> np.ndarray:
    """A Savitzky–Golay window over positions (T, K, 2) (SciPy's ``savgol_filter``, ``interp``
    at the ends), gaps filled by linear interpolation first; a track shorter than the window uses
    the longest odd window it has (raw when that is not longer than ``order``)."""
    from scipy.signal import savgol_filter

    z = np.asarray(z, dtype=np.float64)
    t = np.arange(len(z))
    filled = z.copy()
    flat = filled.reshape(len(z), -1)
    for j in range(flat.shape[1]):
        seen = np.isfinite(flat[:, j])
        if seen.any() and not seen.all():
            flat[:, j] = np.interp(t, t[seen], flat[seen, j])
    window = min(window, len(z) if len(z) % 2 else len(z) - 1)
    if window <= order or not np.isfinite(filled).all():
        return z.copy()
    out = savgol_filter(filled, window, order, axis=0, mode="interp")
    return np.where(np.isfinite(z), out, np.nan)
