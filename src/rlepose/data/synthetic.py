"""The embedded default dataset: rendered articulated figures with COCO-17 keypoints.

Nothing can be downloaded, so the demo and the CPU benchmarks run on images generated here,
deterministically from a seed, written as JPEGs plus a COCO keypoints JSON, so they go through
exactly the loaders, transforms and COCO evaluation used for real data.

Each figure is a 2-D articulated body (torso lean, facing direction from frontal to back view,
shoulder/elbow/hip/knee angles within human limits, limb lengths and widths varied per person)
drawn with clothing colours and textures over a textured background; some are partly covered
by occluders or cut by the image border. Labels are the true joint positions plus annotator-like
Gaussian noise: by default 1 px per 100 px of figure for visible joints and 5 px for occluded
ones (the ambiguity RLE models); with ``label_noise="coco"`` the spread COCO measured between
its own annotators instead (below), and with ``"coco_mixture"`` the same spread drawn from a
heavy-tailed law: most clicks precise, one in five careless. COCO conventions:
v=2 visible, v=1 labelled but occluded, v=0 not labelled (outside the image). Generated data is
labelled as such in its JSON ``info``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from rlepose.data.keypoints import COCO_KEYPOINTS

__all__ = ["LABEL_NOISE", "MIXTURE", "SyntheticConfig", "Figure", "sample_figure_params", "figure_joints",
           "sample_figure", "render_image",
           "write_truth_annotations", "write_dataset", "write_splits"]


LABEL_NOISE = ("fixed", "coco", "coco_mixture")
# The two-component annotator law of label_noise="coco_mixture": (weight, relative scale) of each
# component; _MIXTURE_SCALES are the scales rescaled so that the mixture has unit variance.
MIXTURE = ((0.8, 0.5), (0.2, 4.0))
_MIXTURE_WEIGHTS, _MIXTURE_SCALES = np.array(MIXTURE).T
_MIXTURE_SCALES = _MIXTURE_SCALES / np.sqrt(np.sum(_MIXTURE_WEIGHTS * _MIXTURE_SCALES ** 2))


@dataclass(frozen=True)
class SyntheticConfig:
    num_images: int = 400
    image_size: tuple[int, int] = (256, 256)  # (H, W)
    max_people: int = 2
    occluder_prob: float = 0.5
    truncation_prob: float = 0.15
    noise_visible_px: float = 1.0  # label noise, per person height of 100 px
    noise_occluded_px: float = 5.0
    # "fixed": the two noise levels above; "coco": every labelled joint k gets COCO's measured
    # annotator spread, σ_k·s per joint (σ_k the OKS constant, s = √(box area), the scale the
    # evaluation's OKS uses), i.e. σ_k·s/√2 per coordinate. COCO's σ_k average visible and
    # occluded joints, so occlusion adds nothing there. "coco_mixture": the same second moment per
    # joint (σ_k is a root-mean-square spread, outliers included), drawn from the two-component law
    # of `rlepose toy --noise mixture`: per joint, with probability 0.8 a Gaussian of relative
    # scale 0.5, else of relative scale 4 (kurtosis 13.3 against a Gaussian's 3), both coordinates
    # from the same component (a careless click is careless in x and y).
    label_noise: Literal["fixed", "coco", "coco_mixture"] = "fixed"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.label_noise not in LABEL_NOISE:
            raise ValueError(f"label_noise must be one of {LABEL_NOISE}, not {self.label_noise!r}")


# COCO indices
NOSE, LEYE, REYE, LEAR, REAR, LSH, RSH, LEL, REL, LWR, RWR, LHIP, RHIP, LKN, RKN, LAN, RAN = range(17)


def _unit(angle: float) -> np.ndarray:
    """Direction for an angle measured from straight down, counter-clockwise (image y down)."""
    return np.array([np.sin(angle), np.cos(angle)])


@dataclass
class Figure:
    """Every random choice behind one drawn figure: its build and clothes (a person's own) and its
    posture (what :mod:`rlepose.data.sequences` animates). Angles in radians, measured from
    straight down, counter-clockwise (image y down); pairs are (left, right) limbs, and "outward"
    angles are mirrored between them."""

    yaw: float  # 0 = facing the camera, ±π = back view
    limb_ratios: np.ndarray  # upper arm, forearm, thigh, shin, relative to the standard figure
    lean: float  # the torso's tilt
    arm_raise: np.ndarray  # upper arm from the torso axis, outward
    elbow_bend: np.ndarray  # forearm from the upper arm, outward
    hip_spread: np.ndarray  # thigh from the torso axis, outward
    thigh_swing: np.ndarray  # thigh, added unmirrored (a stride or a crouch)
    knee_bend: np.ndarray  # shin from the thigh, away from the torso axis
    limb_width: float  # relative
    shirt: np.ndarray
    pants: np.ndarray
    skin: np.ndarray
    stripes: bool


def sample_figure_params(rng: np.random.Generator) -> Figure:
    """A random figure (build, clothes and a still posture), as :func:`sample_figure` draws it."""
    d = np.deg2rad
    yaw = rng.uniform(-1, 1) * np.pi
    ratios = np.array([rng.uniform(0.9, 1.1) for _ in range(4)])
    lean = rng.normal(0, d(10))
    arm_raise, elbow_bend = np.zeros(2), np.zeros(2)
    for i in range(2):
        arm_raise[i] = rng.uniform(d(-20), d(150)) * rng.choice([1, 1, 1, -0.3])
        elbow_bend[i] = rng.uniform(0, d(140)) * rng.choice([1, -1])
    crouch = rng.random() < 0.2
    spread, swing, knee = np.zeros(2), np.zeros(2), np.zeros(2)
    for i in range(2):
        spread[i] = rng.uniform(d(-15), d(45))
        swing[i] = rng.uniform(d(-70), d(70)) if crouch else rng.normal(0, d(15))
        bend = rng.uniform(d(60), d(130)) if crouch else rng.uniform(0, d(40))
        knee[i] = bend * rng.choice([1, -1]) * 0.8
    limb_width = rng.uniform(0.7, 1.4)
    shirt, pants = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    skin = np.array([rng.uniform(60, 230), rng.uniform(50, 190), rng.uniform(40, 160)])[::-1]
    return Figure(yaw, ratios, lean, arm_raise, elbow_bend, spread, swing, knee, limb_width, shirt, pants, skin,
                  bool(rng.random() < 0.5))


def figure_joints(fig: Figure, height: float) -> tuple[np.ndarray, dict]:
    """Joint positions (17, 2) of ``fig``, hip centre at the origin, ``height`` ≈ head-to-ankle
    pixels, and the attributes :func:`draw_figure` draws it with."""
    facing = np.cos(fig.yaw)
    s = height / 100.0
    torso_len, neck_len, head_r = 30 * s, 6 * s, 6.5 * s
    sh_half = 11 * s * max(abs(facing), 0.35)
    hip_half = 7 * s * max(abs(facing), 0.45)
    upper, fore, thigh, shin = (base * s * r for base, r in zip((17, 15, 24, 23), fig.limb_ratios))
    lean = fig.lean
    up = -_unit(lean)  # torso direction (upwards)
    side = np.array([-up[1], up[0]])  # perpendicular to it, pointing to the image right
    j = np.zeros((17, 2))
    # person's left is on the image right when facing the camera
    lr = 1.0 if facing >= 0 else -1.0
    j[LHIP], j[RHIP] = lr * hip_half * side, -lr * hip_half * side
    neck = up * torso_len
    j[LSH], j[RSH] = neck + lr * sh_half * side, neck - lr * sh_half * side
    for i, (shoulder, elbow, wrist, outward) in enumerate(((LSH, LEL, LWR, lr), (RSH, REL, RWR, -lr))):
        a_up = lean + outward * fig.arm_raise[i]
        j[elbow] = j[shoulder] + upper * _unit(a_up)
        j[wrist] = j[elbow] + fore * _unit(a_up + outward * fig.elbow_bend[i])
    for i, (hip, knee, ankle, outward) in enumerate(((LHIP, LKN, LAN, lr), (RHIP, RKN, RAN, -lr))):
        a_th = lean + outward * fig.hip_spread[i] + fig.thigh_swing[i]
        j[knee] = j[hip] + thigh * _unit(a_th)
        j[ankle] = j[knee] + shin * _unit(a_th - np.sign(a_th - lean + 1e-6) * fig.knee_bend[i])
    head = neck + up * (neck_len + head_r)
    j[NOSE] = head + side * head_r * 0.6 * np.sin(fig.yaw) + up * -head_r * 0.1
    eye_off = head_r * 0.45
    j[LEYE] = head + side * (lr * eye_off * abs(facing) + head_r * 0.5 * np.sin(fig.yaw)) + up * head_r * 0.25
    j[REYE] = head + side * (-lr * eye_off * abs(facing) + head_r * 0.5 * np.sin(fig.yaw)) + up * head_r * 0.25
    j[LEAR] = head + side * lr * head_r * max(abs(facing), 0.3) + up * head_r * 0.05
    j[REAR] = head - side * lr * head_r * max(abs(facing), 0.3) + up * head_r * 0.05
    attrs = {"head": head, "head_r": head_r, "neck": neck, "facing": facing, "yaw": fig.yaw,
             "limb_w": max(2.0, 4.5 * s * fig.limb_width), "shirt": fig.shirt, "pants": fig.pants,
             "skin": fig.skin, "stripes": fig.stripes}
    return j, attrs


def sample_figure(rng: np.random.Generator, height: float) -> tuple[np.ndarray, dict]:
    """Joint positions (17, 2) of one random figure, hip centre at the origin, ``height`` ≈
    head-to-ankle pixels, and drawing attributes."""
    return figure_joints(sample_figure_params(rng), height)


def draw_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random backdrop (H, W, 3) uint8 (BGR, as OpenCV draws): a colour gradient, noise and clutter."""
    base = rng.integers(0, 256, 3).astype(np.float32)
    grad = np.linspace(0, 1, w)[None, :, None] * rng.uniform(-80, 80, 3)
    img = np.clip(base + grad + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    for _ in range(rng.integers(3, 9)):  # clutter
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        p = rng.integers(0, [w, h], 2)
        if rng.random() < 0.5:
            cv2.rectangle(img, tuple(int(v) for v in p), tuple(int(v) for v in p + rng.integers(10, 80, 2)), color, -1)
        else:
            cv2.circle(img, tuple(int(v) for v in p), int(rng.integers(5, 40)), color, -1)
    return cv2.GaussianBlur(img, (3, 3), 0)


def draw_figure(img: np.ndarray, j: np.ndarray, a: dict) -> None:
    """Draw the figure with joints ``j`` (17, 2) pixels and attributes ``a`` (:func:`figure_joints`) into ``img``, in place."""
    w = int(round(a["limb_w"]))
    col = lambda c: tuple(int(v) for v in c)  # noqa: E731
    p = lambda i: tuple(int(round(v)) for v in j[i])  # noqa: E731
    # far side first: for a frontal figure the person's right (image left) is not nearer, so
    # order by facing: the side turned away is drawn first
    sides = [(RSH, REL, RWR, RHIP, RKN, RAN), (LSH, LEL, LWR, LHIP, LKN, LAN)]
    if a["yaw"] < 0:
        sides = sides[::-1]
    far, near = sides
    for s_, e, wr, hp, kn, an in (far,):
        cv2.line(img, p(hp), p(kn), col(a["pants"] * 0.8), w + 2)
        cv2.line(img, p(kn), p(an), col(a["pants"] * 0.8), w + 1)
        cv2.line(img, p(s_), p(e), col(a["shirt"] * 0.8), w + 1)
        cv2.line(img, p(e), p(wr), col(a["skin"] * 0.85), w)
    torso = np.array([j[LSH], j[RSH], j[RHIP], j[LHIP]], np.int32)
    cv2.fillConvexPoly(img, torso, col(a["shirt"]))
    if a["stripes"]:
        for t in np.linspace(0.2, 0.8, 4):
            l_, r_ = j[LSH] + (j[LHIP] - j[LSH]) * t, j[RSH] + (j[RHIP] - j[RSH]) * t
            cv2.line(img, tuple(int(v) for v in l_), tuple(int(v) for v in r_), col(255 - a["shirt"]), max(1, w // 2))
    cv2.line(img, tuple(int(v) for v in a["neck"]), tuple(int(v) for v in a["head"]), col(a["skin"]), w)
    cv2.circle(img, tuple(int(v) for v in a["head"]), int(round(a["head_r"])), col(a["skin"]), -1)
    if a["facing"] > 0.2:
        for e in (LEYE, REYE):
            cv2.circle(img, p(e), max(1, w // 3), (20, 20, 20), -1)
    else:
        cv2.ellipse(img, tuple(int(v) for v in a["head"]), (int(a["head_r"]), int(a["head_r"] * 0.7)), 0, 180, 360,
                    (30, 25, 20), -1)  # hair seen from behind
    for s_, e, wr, hp, kn, an in (near,):
        cv2.line(img, p(hp), p(kn), col(a["pants"]), w + 2)
        cv2.line(img, p(kn), p(an), col(a["pants"]), w + 1)
        cv2.line(img, p(s_), p(e), col(a["shirt"]), w + 1)
        cv2.line(img, p(e), p(wr), col(a["skin"]), w)


def person_box(joints: np.ndarray, attrs: dict, image_size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The tight box (x0, y0, x1, y1) around a drawn figure (its joints plus head and limb width),
    clipped to the image (``image_size`` (H, W))."""
    h, w = image_size
    m = attrs["head_r"] * 0.8 + attrs["limb_w"]
    x0, y0 = np.clip(joints.min(0) - m, 0, [w - 1, h - 1])
    x1, y1 = np.clip(joints.max(0) + m, 0, [w - 1, h - 1])
    return x0, y0, x1, y1


def joint_visibility(joints: np.ndarray, attrs: dict, mask: np.ndarray) -> np.ndarray:
    """COCO visibility (17,) of a drawn figure's joints: 0 outside the image, 1 under an occluder
    (``mask`` (H, W) nonzero) or a face point seen from behind, 2 visible."""
    h, w = mask.shape
    out = np.zeros(len(joints), int)
    for k, (x, y) in enumerate(joints):
        if not (0 <= x < w and 0 <= y < h):
            continue
        occluded = bool(mask[int(y), int(x)]) or (k in (LEAR, REAR, LEYE, REYE, NOSE) and attrs["facing"] < -0.2)
        out[k] = 1 if occluded else 2
    return out


def render_image(rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, list[dict]]:
    """One RGB image and its persons: ``keypoints`` (17, 3) noisy labels with COCO visibility,
    ``true`` (17, 2) exact positions, ``bbox`` (x, y, w, h)."""
    h, w = cfg.image_size
    img = draw_background(rng, h, w)
    people = []
    for _ in range(rng.integers(1, cfg.max_people + 1)):
        height = rng.uniform(0.45, 0.9) * h
        joints, attrs = sample_figure(rng, height)
        lo, hi = joints.min(0), joints.max(0)
        margin = attrs["head_r"] + attrs["limb_w"]
        if rng.random() < cfg.truncation_prob:  # let the figure cross the border
            offset = rng.uniform([-lo[0] - (hi[0] - lo[0]) * 0.4, -lo[1]], [w - hi[0] + (hi[0] - lo[0]) * 0.4, h - hi[1] + (hi[1] - lo[1]) * 0.4])
        else:
            offset = rng.uniform([-lo[0] + margin, -lo[1] + margin + attrs["head_r"]],
                                 [max(-lo[0] + margin + 1, w - hi[0] - margin), max(-lo[1] + margin + attrs["head_r"] + 1, h - hi[1] - margin)])
        joints = joints + offset
        for k in ("head", "neck"):
            attrs[k] = attrs[k] + offset
        draw_figure(img, joints, attrs)
        people.append((joints, attrs))
    mask = np.zeros((h, w), np.uint8)  # union of all occluders: any of them can hide any joint
    for joints, attrs in people:
        if rng.random() < cfg.occluder_prob:
            centre = joints[rng.integers(0, 17)] + rng.normal(0, attrs["head_r"] * 2, 2)
            size = rng.uniform(0.15, 0.4, 2) * (joints.max(0) - joints.min(0) + 10)
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            box = np.array([centre - size / 2, centre + size / 2]).astype(int)
            if rng.random() < 0.5:
                cv2.rectangle(img, tuple(box[0]), tuple(box[1]), color, -1)
                cv2.rectangle(mask, tuple(box[0]), tuple(box[1]), 1, -1)
            else:
                axes = tuple(int(v) for v in size / 2)
                angle = float(rng.uniform(0, 180))
                cv2.ellipse(img, tuple(int(v) for v in centre), axes, angle, 0, 360, color, -1)
                cv2.ellipse(mask, tuple(int(v) for v in centre), axes, angle, 0, 360, 1, -1)
    annotations = []
    coco_sd = np.asarray(COCO_KEYPOINTS.sigmas) / np.sqrt(2)  # per coordinate, in units of s
    for joints, attrs in people:
        scale = (joints.max(0) - joints.min(0)).max() / 100.0
        x0, y0, x1, y1 = person_box(joints, attrs, (h, w))
        coco_sd_px = coco_sd * np.sqrt((x1 - x0) * (y1 - y0))
        kps = np.zeros((17, 3))
        visibility = joint_visibility(joints, attrs, mask)
        for k in np.flatnonzero(visibility):
            occluded = visibility[k] == 1
            if cfg.label_noise == "coco":
                sd = coco_sd_px[k]
            elif cfg.label_noise == "coco_mixture":
                sd = coco_sd_px[k] * _mixture_scale(rng)
            else:
                sd = (cfg.noise_occluded_px if occluded else cfg.noise_visible_px) * scale
            kps[k, :2] = np.clip(joints[k] + rng.normal(0, sd, 2), [0, 0], [w - 1, h - 1])
            kps[k, 2] = 1 if occluded else 2
        if (kps[:, 2] > 0).sum() == 0:
            continue
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        annotations.append({"keypoints": kps, "true": joints, "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]})
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB), annotations


def _mixture_scale(rng: np.random.Generator) -> float:
    """One draw of the relative scale of :data:`MIXTURE`, normalized so that the mixture has unit
    variance (a Gaussian scaled by it then has the spread it is multiplied by, in r.m.s.)."""
    return float(_MIXTURE_SCALES[rng.choice(len(_MIXTURE_SCALES), p=_MIXTURE_WEIGHTS)])


def write_truth_annotations(ann_path: str | Path) -> Path:
    """Beside a rendered split's COCO JSON, ``<split>_true.json``: the same annotations with each
    labelled joint at its true position instead of its noisy label (visibility unchanged), so
    predictions can be scored against the truth as well as against the labels. Returns its path."""
    ann_path = Path(ann_path)
    data = json.loads(ann_path.read_text())
    for a in data["annotations"]:
        kps = np.reshape(a["keypoints"], (-1, 3))
        true = np.reshape(a["true_keypoints"], (-1, 2))
        kps[:, :2] = np.where(kps[:, 2:] > 0, true, 0.0)
        a["keypoints"] = [float(v) for v in kps.ravel()]
    out = ann_path.with_name(f"{ann_path.stem}_true.json")
    out.write_text(json.dumps(data))
    return out


def write_dataset(out_dir: str | Path, cfg: SyntheticConfig, split: str = "train") -> Path:
    """Render ``cfg.num_images`` images into ``out_dir/<split>/`` and write
    ``out_dir/<split>.json`` (COCO keypoints format); returns the JSON path. Reuses an
    existing, complete rendering of the same config (the config is stored in ``info``)."""
    out_dir = Path(out_dir)
    ann_path = out_dir / f"{split}.json"
    info = {"description": "rlepose GENERATED synthetic figures (not real data)", "config": asdict(cfg)}
    if ann_path.is_file():
        try:
            if json.loads(ann_path.read_text()).get("info", {}).get("config") == json.loads(json.dumps(asdict(cfg))):
                return ann_path
        except json.JSONDecodeError:
            pass
    (out_dir / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(cfg.seed)
    images, annotations = [], []
    for i in range(cfg.num_images):
        img, people = render_image(rng, cfg)
        name = f"{split}_{i:06d}.jpg"
        cv2.imwrite(str(out_dir / split / name), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append({"id": i + 1, "file_name": name, "width": cfg.image_size[1], "height": cfg.image_size[0]})
        for p in people:
            bbox = p["bbox"]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                                "bbox": bbox, "area": bbox[2] * bbox[3],
                                "num_keypoints": int((p["keypoints"][:, 2] > 0).sum()),
                                "keypoints": [float(round(v, 2)) for v in p["keypoints"].ravel()],
                                "true_keypoints": [float(round(v, 2)) for v in p["true"].ravel()]})
    categories = [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_KEYPOINTS.joints),
                   "skeleton": [[a + 1, b + 1] for a, b in COCO_KEYPOINTS.skeleton]}]
    ann_path.write_text(json.dumps({"info": info, "images": images, "annotations": annotations,
                                    "categories": categories}))
    return ann_path


def write_splits(data_dir: str | Path, train_images: int, val_images: int, seed: int = 0,
                 label_noise: str = "fixed") -> None:
    """The embedded dataset as every rlepose command renders it: ``train`` from ``seed``, the
    held-out ``val`` from ``seed + 10 000`` (0 images: that split is not written)."""
    if train_images:
        write_dataset(data_dir, SyntheticConfig(num_images=train_images, seed=seed, label_noise=label_noise), "train")
    if val_images:
        write_dataset(data_dir, SyntheticConfig(num_images=val_images, seed=seed + 10_000, label_noise=label_noise), "val")
