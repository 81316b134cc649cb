"""Retinal layer boundaries in OCT B-scans (paper appendix H, Table 18): the Duke DME dataset's
MATLAB files, a generator of OCT-like B-scans written in the same files, and the training set.

The Duke DME dataset (Chiu et al., Biomedical Optics Express 2015) has one MATLAB file per
subject, ``Subject_01.mat`` … ``Subject_10.mat``, each holding

* ``images`` (H, W, S) uint8: the subject's S B-scans (496 × 768 × 61),
* ``manualLayers1``, ``manualLayers2`` (8, W, S): two experts' depth of each of the 8 layer
  boundaries in every column, as MATLAB (1-based) row numbers, NaN where a column (or a whole
  B-scan) is unlabelled; 11 B-scans of each subject are labelled,
* fluid masks and automatic segmentations, which rlepose does not read.

The literature trains on subjects 1–5 and tests on 6–10. :func:`load_dme` reads labelled
B-scans into :class:`BScan` records with 0-based depths in pixels; :func:`render_dme_like`
writes generated subjects in the same layout (what ``data.rendered`` makes on first use), so the
embedded default goes through the real loader. Depths are normalized per image as
``u = (y + 0.5) / H − 0.5`` (and columns alike), whatever the resolution.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

__all__ = ["BOUNDARIES", "BScan", "OCTDataError", "load_dme", "write_dme_subject", "render_bscan", "render_dme_like",
           "BoundaryTransform", "BoundaryDataset", "normalized_depth", "pixel_depth"]

#: the 8 boundaries the DME experts traced, top to bottom (inner limiting membrane … Bruch's membrane)
BOUNDARIES = ("ILM", "NFL/GCL", "IPL/INL", "INL/OPL", "OPL/ONL", "ISM/ISE", "OS/RPE", "BM")


class OCTDataError(ValueError):
    """A DME file or folder that cannot be read as such."""


@dataclass
class BScan:
    """One labelled B-scan. ``image`` (H, W) uint8; ``depths`` (B, W) 0-based rows in pixels of
    the annotator used for training, NaN where unlabelled; ``second`` the other annotator's (or
    None); ``pixel_size_um``: the axial pixel size where the file gives it."""

    image: np.ndarray
    depths: np.ndarray
    second: np.ndarray | None
    subject: str
    index: int
    pixel_size_um: float | None = None


def _subject_file(root: Path, subject: str) -> Path:
    name = f"Subject_{int(subject):02d}.mat" if str(subject).isdigit() else f"{subject}.mat"
    return root / name


def load_dme(root: str | Path, subjects: tuple[str, ...] = ("1", "2", "3", "4", "5"),
             annotator: int = 1) -> list[BScan]:
    """The labelled B-scans of ``subjects`` (numbers, ``"1"`` → ``Subject_01.mat``, or file
    stems) under ``root``; depths of expert ``annotator`` (1 or 2), the other's as ``second``."""
    from scipy.io import loadmat

    if annotator not in (1, 2):
        raise OCTDataError(f"annotator must be 1 or 2, got {annotator}")
    root = Path(root)
    scans: list[BScan] = []
    for subject in subjects:
        path = _subject_file(root, subject)
        if not path.is_file():
            raise OCTDataError(f"{path} not found (the Duke DME files are Subject_01.mat … Subject_10.mat)")
        try:
            mat = loadmat(str(path))
        except Exception as err:  # scipy raises several types for a damaged file
            raise OCTDataError(f"{path}: not a readable MATLAB file ({err})") from None
        missing = [k for k in ("images", "manualLayers1") if k not in mat]
        if missing:
            raise OCTDataError(f"{path}: no {', '.join(missing)} (not a Duke DME subject file)")
        images = np.asarray(mat["images"])
        layers = [np.asarray(mat[k], dtype=np.float64) if k in mat else None for k in ("manualLayers1", "manualLayers2")]
        if images.ndim == 2:
            images, layers = images[..., None], [None if a is None else a[..., None] for a in layers]
        if layers[0].shape[1:] != images.shape[1:]:
            raise OCTDataError(f"{path}: manualLayers1 {layers[0].shape} does not match images {images.shape}")
        size = mat.get("axialPixelSizeUm")
        size = float(np.asarray(size).ravel()[0]) if size is not None else None
        first, second = (layers[0], layers[1]) if annotator == 1 else (layers[1], layers[0])
        if first is None:
            raise OCTDataError(f"{path}: no manualLayers{annotator}")
        for s in range(images.shape[2]):
            depths = first[:, :, s] - 1.0  # MATLAB rows → 0-based pixel centres
            if np.isnan(depths).all():
                continue
            scans.append(BScan(np.ascontiguousarray(images[:, :, s]).astype(np.uint8), depths,
                               None if second is None else second[:, :, s] - 1.0, str(subject), s, size))
    if not scans:
        raise OCTDataError(f"no labelled B-scans for subjects {', '.join(map(str, subjects))} in {root}")
    return scans


def write_dme_subject(path: str | Path, images: np.ndarray, layers1: np.ndarray, layers2: np.ndarray | None = None,
                      pixel_size_um: float | None = None) -> None:
    """A subject file in the DME layout: ``images`` (H, W, S) uint8, ``layers`` (8, W, S)
    0-based depths (NaN unlabelled), stored as MATLAB's 1-based rows."""
    from scipy.io import savemat

    data = {"images": np.asarray(images, np.uint8), "manualLayers1": np.asarray(layers1, np.float64) + 1.0}
    if layers2 is not None:
        data["manualLayers2"] = np.asarray(layers2, np.float64) + 1.0
    if pixel_size_um is not None:
        data["axialPixelSizeUm"] = np.float64(pixel_size_um)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), data, do_compression=True)


# ----------------------------------------------------------------------------- the generator

#: reflectivity of the regions between boundaries, top to bottom: vitreous, NFL, GCL+IPL, INL,
#: OPL, ONL, inner/outer segments, RPE, choroid
_REFLECTIVITY = np.array([0.04, 0.75, 0.45, 0.22, 0.55, 0.18, 0.62, 0.95, 0.45])
#: mean thickness of the 7 layers (fractions of the image height) away from the fovea, and how
#: much of it is left at the foveal centre
_THICKNESS = np.array([0.045, 0.085, 0.05, 0.035, 0.09, 0.035, 0.04])
_AT_FOVEA = np.array([0.0, 0.05, 0.25, 0.4, 1.6, 1.2, 1.0])


def _smooth_noise(rng: np.random.Generator, width: int, scale: float, terms: int = 3) -> np.ndarray:
    """A smooth random curve (W,) of amplitude about ``scale``: a few low-frequency sines."""
    x = np.linspace(0, 1, width)
    out = np.zeros(width)
    for k in range(1, terms + 1):
        out += rng.normal(0, scale / k) * np.sin(2 * math.pi * (k * x * rng.uniform(0.5, 1.5) + rng.uniform()))
    return out


def render_bscan(rng: np.random.Generator, height: int = 128, width: int = 256,
                 noise: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One OCT-like B-scan: a curved layered retina with a foveal pit, speckle, vessel shadows
    and fluid pockets. Returns the image (H, W) uint8, the true boundary depths (8, W), and two
    annotators' traces of them (8, W) (the truth plus smooth and per-column noise), in 0-based
    pixel rows."""
    h, w = height, width
    x = np.arange(w, dtype=np.float64)
    fovea = rng.uniform(0.3, 0.7) * w
    pit = np.exp(-0.5 * ((x - fovea) / (rng.uniform(0.06, 0.1) * w)) ** 2)
    tilt = rng.uniform(-0.08, 0.08) * h * (x / w - 0.5)
    curve = rng.uniform(0.0, 0.25) * h * ((x - fovea) / w) ** 2
    bottom = rng.uniform(0.55, 0.68) * h + tilt + curve + _smooth_noise(rng, w, 0.01 * h)  # Bruch's membrane
    thickness = []
    for t, f in zip(_THICKNESS, _AT_FOVEA):
        base = t * h * rng.uniform(0.85, 1.15) * (1 + (f - 1) * pit)
        thickness.append(np.maximum(base + _smooth_noise(rng, w, 0.004 * h), 0.0))
    thickness = np.stack(thickness)  # (7, W)
    fluid = np.zeros((h, w), dtype=bool)
    pockets = []
    for _ in range(rng.poisson(1.2)):  # fluid pockets (cysts) in INL, OPL or ONL thicken the retina
        layer = int(rng.choice([2, 3, 4]))
        centre, half, tall = rng.uniform(0.15, 0.85) * w, rng.uniform(0.03, 0.1) * w, rng.uniform(0.04, 0.12) * h
        profile = tall * np.sqrt(np.clip(1 - ((x - centre) / half) ** 2, 0, None))
        thickness[layer] += profile
        pockets.append((layer, profile, rng.uniform() < 0.3))
    # the outer retina lies flat on Bruch's membrane; the thinning inner layers make the foveal pit
    depths = bottom - np.concatenate([np.cumsum(thickness[::-1], 0)[::-1], np.zeros((1, w))])  # (8, W)
    yy = np.arange(h, dtype=np.float64)[:, None]
    intensity = np.full((h, w), _REFLECTIVITY[0])
    for k in range(8):
        edge = 1 / (1 + np.exp(-(yy - depths[k]) / 0.6))
        intensity += (_REFLECTIVITY[k + 1] - _REFLECTIVITY[k]) * edge * rng.uniform(0.85, 1.15)
    intensity *= np.exp(-np.clip(yy - depths[-1], 0, None) / (0.15 * h))  # the choroid fades with depth
    for layer, profile, breaks in pockets:  # dark fluid, covering the boundary above when it "breaks" it
        start = depths[layer + 1] - profile - (0.5 * profile if breaks else 0.0) + 1
        end = depths[layer + 1]
        fluid |= (yy > start) & (yy < end) & (profile > 1)
    intensity = np.where(fluid, 0.05, intensity)
    for _ in range(rng.poisson(2.0)):  # vessel shadows: columns darkened below the inner retina
        centre, half = rng.uniform(0, w), rng.uniform(1.0, 3.5) * w / 256
        column = np.exp(-0.5 * ((x - centre) / half) ** 2) * rng.uniform(0.5, 0.85)
        intensity *= 1 - column[None, :] * (yy > depths[1][None, :] + 1)
    intensity *= rng.uniform(0.8, 1.2)
    speckle = rng.gamma(shape=4.0 / noise ** 2, scale=noise ** 2 / 4.0, size=(h, w))  # multiplicative, mean 1
    image = intensity * speckle + rng.normal(0, 0.03 * noise, (h, w))
    image = cv2.GaussianBlur(image.astype(np.float32), (0, 0), 0.6)
    image = np.clip(np.log1p(12 * np.clip(image, 0, None)) / math.log1p(12 * 1.2), 0, 1)
    annotators = []
    for _ in range(2):
        smooth = np.stack([_smooth_noise(rng, w, 0.6) for _ in range(8)])
        annotators.append(depths + smooth + rng.normal(0, 0.35, depths.shape))
    return (image * 255).astype(np.uint8), depths, annotators[0], annotators[1]


def render_dme_like(root: str | Path, subjects: int = 10, scans: int = 11, height: int = 128, width: int = 256,
                    seed: int = 0, pixel_size_um: float = 3.87 * 496 / 128) -> Path:
    """Write ``subjects`` generated subjects of ``scans`` labelled B-scans each as
    ``root/Subject_XX.mat`` in the DME layout (once: files already there are kept). Like the real
    labels, the first and last 5–15 % of columns are unlabelled (NaN). Returns ``root``."""
    root = Path(root)
    done = root / ".rendered"
    key = f"{subjects} {scans} {height} {width} {seed}"
    if done.is_file() and done.read_text() == key:
        return root
    root.mkdir(parents=True, exist_ok=True)
    for s in range(1, subjects + 1):
        rng = np.random.default_rng([seed, s])
        images, first, second = [], [], []
        for _ in range(scans):
            image, _, a1, a2 = render_bscan(rng, height, width)
            left, right = (int(rng.uniform(0.05, 0.15) * width) for _ in range(2))
            for a in (a1, a2):
                a[:, :left] = np.nan
                a[:, width - right:] = np.nan
            images.append(image)
            first.append(a1)
            second.append(a2)
        write_dme_subject(root / f"Subject_{s:02d}.mat", np.stack(images, -1), np.stack(first, -1),
                          np.stack(second, -1), pixel_size_um)
    done.write_text(key)
    return root


# ----------------------------------------------------------------------------- training samples

def normalized_depth(y: np.ndarray, size: int) -> np.ndarray:
    """0-based pixel rows (or columns) → normalized ``(y + 0.5) / size − 0.5``."""
    return (y + 0.5) / size - 0.5


def pixel_depth(u: np.ndarray, size: int) -> np.ndarray:
    """Normalized depths → 0-based pixel rows of an image ``size`` pixels tall."""
    return (u + 0.5) * size - 0.5


def column_centres(columns: int) -> np.ndarray:
    """Normalized positions (C,) of ``columns`` equal-width output columns' centres."""
    return (np.arange(columns) + 0.5) / columns - 0.5


def sample_columns(depths: np.ndarray, columns: int) -> np.ndarray:
    """Depths (B, W) of an image W columns wide at the centres of ``columns`` output columns,
    linearly interpolated (NaN where a neighbour is unlabelled): (B, columns), pixels."""
    w = depths.shape[1]
    x = (column_centres(columns) + 0.5) * w - 0.5  # 0-based columns of the image
    left = np.clip(np.floor(x).astype(int), 0, w - 1)
    right = np.clip(left + 1, 0, w - 1)
    frac = np.clip(x - left, 0, 1)
    return depths[:, left] * (1 - frac) + depths[:, right] * frac


@dataclass(frozen=True)
class BoundaryTransform:
    """B-scan → network input and targets. ``input_size`` (H, W) pixels; ``columns``: the
    model's output columns; training adds a horizontal flip, a vertical shift of up to
    ``shift`` of the height, and a gain/gamma jitter."""

    input_size: tuple[int, int] = (128, 256)
    columns: int = 32
    train: bool = False
    shift: float = 0.1

    def __call__(self, scan: BScan, rng: np.random.Generator | None = None) -> dict:
        h, w = scan.image.shape
        image = cv2.resize(scan.image, (self.input_size[1], self.input_size[0]), interpolation=cv2.INTER_AREA)
        depths = scan.depths.copy()
        if self.train:
            rng = rng or np.random.default_rng()
            if rng.uniform() < 0.5:
                image, depths = image[:, ::-1], depths[:, ::-1]
            dy = int(round(rng.uniform(-self.shift, self.shift) * self.input_size[0]))
            image = np.roll(image, dy, axis=0)
            if dy > 0:
                image[:dy] = image[dy:dy + 1].mean()
            elif dy < 0:
                image[dy:] = image[dy - 1:dy].mean()
            depths = depths + dy * h / self.input_size[0]
            gain, gamma = rng.uniform(0.8, 1.2), rng.uniform(0.8, 1.25)
            image = np.clip(255 * gain * (image / 255.0) ** gamma, 0, 255).astype(np.uint8)
        target = normalized_depth(sample_columns(depths, self.columns), h)  # (B, C)
        valid = np.isfinite(target) & (np.abs(target) < 0.5)
        return {"image": torch.from_numpy(np.ascontiguousarray(np.repeat(image[None], 3, 0))),  # (3, H, W) uint8
                "target": torch.from_numpy(np.nan_to_num(target, nan=0.0).reshape(-1, 1).astype(np.float32)),
                "target_weight": torch.from_numpy(valid.reshape(-1).astype(np.float32))}


class BoundaryDataset(torch.utils.data.Dataset):
    """Labelled B-scans through a :class:`BoundaryTransform`; samples carry their ``index``.
    Training augmentations are drawn from (seed, epoch, index), the epoch travelling with the
    index as in :class:`rlepose.data.datasets.TopDownDataset` (exact resumption)."""

    def __init__(self, scans: list[BScan], transform: BoundaryTransform, seed: int = 0) -> None:
        self.scans, self.transform, self.seed = scans, transform, seed

    def __len__(self) -> int:
        return len(self.scans)

    def __getitem__(self, index: int) -> dict:
        epoch, i = divmod(int(index), len(self.scans))
        rng = np.random.default_rng([self.seed, epoch, i]) if self.transform.train else None
        return {**self.transform(self.scans[i], rng), "index": i}
