"""Human3.6M: the 17-joint skeleton, cameras and projection, both data layouts users have,
the standard protocol, and a generator of plausible skeletons for CPU tests and benchmarks.

Joint order (the 17 joints of the common codebases): 0 pelvis (root), 1 right hip, 2 right
knee, 3 right ankle, 4 left hip, 5 left knee, 6 left ankle, 7 spine, 8 thorax, 9 neck/nose,
10 head, 11 left shoulder, 12 left elbow, 13 left wrist, 14 right shoulder, 15 right elbow,
16 right wrist. Units: world and camera coordinates in metres as stored, metrics in mm.

Protocol: train on S1, S5, S6, S7, S8, test on S9, S11; poses root (pelvis)-relative.
Frame subsampling is a loader argument (``stride``): the single-stage convention of Sun et al.
is every 5th frame for training and every 64th for testing; lifting uses every frame.

Cameras come from ``cameras.pkl`` (the common preprocessed file): for each (subject, camera id)
``R`` and ``T`` with camera = (world − T) @ R for row vectors (T: the camera centre in world
metres; checked on the fixture: its camera-space poses come out upright, feet on the floor),
``f``, ``c`` (pixels), ``k`` (3 radial) and ``p`` (2 tangential distortion coefficients).
"""
from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rlepose.data.datasets import DataError, Instance
from rlepose.data.keypoints import KeypointSpec

__all__ = ["H36M_KEYPOINTS", "PARENTS", "TRAIN_SUBJECTS", "TEST_SUBJECTS", "CAMERA_IDS", "FROM_32",
           "MPII_TO_H36M", "Camera", "load_cameras", "parse_image_name", "H36MFrames", "load_h36m_frames",
           "h36m_instances", "mpii_as_h36m", "PoseSet", "load_h36m_poses", "BONE_MM", "ACTIONS",
           "generate_skeletons", "generate_pose_set"]

H36M_KEYPOINTS = KeypointSpec(
    name="h36m",
    joints=("pelvis", "right_hip", "right_knee", "right_ankle", "left_hip", "left_knee", "left_ankle", "spine",
            "thorax", "neck", "head", "left_shoulder", "left_elbow", "left_wrist", "right_shoulder", "right_elbow",
            "right_wrist"),
    skeleton=((0, 1), (1, 2), (2, 3), (0, 4), (4, 5), (5, 6), (0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (11, 12),
              (12, 13), (8, 14), (14, 15), (15, 16)),
    flip_pairs=((1, 4), (2, 5), (3, 6), (11, 14), (12, 15), (13, 16)),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15, 16),
)
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
CAMERA_IDS = ("54138969", "55011271", "58860488", "60457274")
# The 17 of the 32 joints in data_3d_h36m.npz (VideoPose3D layout), in the order above.
FROM_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)
# MPII joint → H36M joint, for mixed 2-D/3-D training (H36M spine has no MPII counterpart).
MPII_TO_H36M = {6: 0, 2: 1, 1: 2, 0: 3, 3: 4, 4: 5, 5: 6, 7: 8, 8: 9, 9: 10, 13: 11, 14: 12, 15: 13, 12: 14,
                11: 15, 10: 16}


@dataclass(frozen=True)
class Camera:
    R: np.ndarray  # (3, 3) rotation as stored: camera = (world − T) @ R (row vectors)
    T: np.ndarray  # (3,) camera centre in world coordinates (m)
    f: np.ndarray  # (2,) focal lengths (px)
    c: np.ndarray  # (2,) principal point (px)
    k: np.ndarray  # (3,) radial distortion
    p: np.ndarray  # (2,) tangential distortion
    width: int = 1000
    height: int = 1000

    def world_to_camera(self, x: np.ndarray) -> np.ndarray:
        """(…, 3) world (m) → camera coordinates (m). The world frame has z up, floor at z ≈ 0."""
        return (x - self.T) @ self.R

    def camera_to_world(self, x: np.ndarray) -> np.ndarray:
        return x @ self.R.T + self.T

    def project(self, x_cam: np.ndarray, distort: bool = True) -> np.ndarray:
        """(…, 3) camera coordinates → (…, 2) pixels, with the radial/tangential distortion
        model of the H36M camera files (as in the common codebases)."""
        xy = x_cam[..., :2] / x_cam[..., 2:3]
        if distort:
            r2 = (xy**2).sum(-1, keepdims=True)
            radial = 1 + self.k[0] * r2 + self.k[1] * r2**2 + self.k[2] * r2**3
            tangential = self.p[0] * xy[..., 1:2] + self.p[1] * xy[..., 0:1]
            xy = xy * (radial + tangential) + r2 * self.p[::-1]
        return xy * self.f + self.c

    def backproject(self, uv: np.ndarray, depth: np.ndarray) -> np.ndarray:
        """Pixels (…, 2) at camera depth (…,) → camera coordinates, ignoring distortion (its
        effect at H36M's image centre is ~1–2 px, below a pose's labelling noise)."""
        xy = (uv - self.c) / self.f
        return np.concatenate([xy * depth[..., None], depth[..., None]], -1)


def load_cameras(path: str | Path) -> dict[tuple[str, str], Camera]:
    """``cameras.pkl`` → {(subject, camera id): Camera}."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"camera file not found: {path}")
    with open(path, "rb") as fh:
        raw = pickle.load(fh)
    cams = {}
    for key, p in raw.items():
        try:
            cams[tuple(key)] = Camera(np.asarray(p["R"], float).reshape(3, 3), np.asarray(p["T"], float).reshape(3),
                                      np.asarray(p["f"], float).reshape(2), np.asarray(p["c"], float).reshape(2),
                                      np.asarray(p["k"], float).reshape(3), np.asarray(p["p"], float).reshape(2),
                                      int(np.asarray(p.get("w", 1000))), int(np.asarray(p.get("h", 1000))))
        except (KeyError, ValueError) as e:
            raise DataError(f"{path}: camera {key} is malformed ({e!r})") from e
    return cams


def parse_image_name(name: str) -> tuple[str, str, str]:
    """'S1/S1_Directions_1.54138969/S1_Directions_1.54138969_000001.jpg' → (S1, Directions, 54138969)."""
    stem = Path(name).parent.name or Path(name).stem
    subject, rest = stem.split("_", 1)
    action, camera = rest.rsplit(".", 1)
    return subject, action.split(" ")[0].rstrip("_0123456789") or action, camera.split("_")[0]


@dataclass
class H36MFrames:
    """Frames in layout (a): ``image`` paths, ``center`` (N, 2) px, ``scale`` (N,) (box side /
    200, the common convention), ``joints_2d`` (N, 17, 2) px, ``joints_cam`` (N, 17, 3) camera
    coordinates in mm, ``subject``, ``action``, ``camera`` per frame."""

    image: list[str]
    center: np.ndarray
    scale: np.ndarray
    joints_2d: np.ndarray
    joints_cam: np.ndarray
    subject: list[str]
    action: list[str]
    camera: list[str]


def load_h36m_frames(npz_file: str | Path, subjects: tuple[str, ...] | None = None, stride: int = 1) -> H36MFrames:
    """Layout (a): an npz with ``imgname``, ``center``, ``scale``, ``part`` (N, 17, 3: u, v, vis)
    and ``S`` (N, 17, 4: camera x, y, z in metres, vis). Keeps ``subjects`` and every
    ``stride``-th frame of each sequence (by the frame number in the image name)."""
    path = Path(npz_file)
    if not path.is_file():
        raise DataError(f"Human3.6M file not found: {path}")
    d = np.load(path, allow_pickle=True)
    missing = {"imgname", "center", "scale", "part", "S"} - set(d.files)
    if missing:
        raise DataError(f"{path}: missing arrays {sorted(missing)} (expected imgname, center, scale, part, S)")
    keep = []
    meta = []
    for i, name in enumerate(d["imgname"]):
        subject, action, camera = parse_image_name(str(name))
        frame = int(Path(str(name)).stem.rsplit("_", 1)[-1])
        if (subjects is None or subject in subjects) and (frame - 1) % stride == 0:
            keep.append(i)
            meta.append((subject, action, camera))
    keep = np.asarray(keep, dtype=int)
    return H36MFrames([str(n) for n in d["imgname"][keep]], d["center"][keep].astype(float),
                      d["scale"][keep].astype(float), d["part"][keep, :, :2].astype(float),
                      d["S"][keep, :, :3].astype(float) * 1000.0,
                      [m[0] for m in meta], [m[1] for m in meta], [m[2] for m in meta])


def h36m_instances(frames: H36MFrames, image_root: str | Path) -> list[Instance]:
    """Layout-(a) frames as top-down instances with root-relative depth (mm); the box is the
    frame's ``scale``·200 pixels square around ``center`` (the common preprocessing);
    ``extra`` keeps camera-space joints, subject, action and camera for evaluation."""
    out = []
    for i in range(len(frames.image)):
        side = 200.0 * frames.scale[i]
        cx, cy = frames.center[i]
        joints = frames.joints_cam[i]
        out.append(Instance(Path(image_root) / frames.image[i], i, np.array([cx - side / 2, cy - side / 2, side, side]),
                            frames.joints_2d[i], np.ones(17), 1.0, side * side, frames.image[i],
                            depth=joints[:, 2] - joints[0, 2],
                            extra={"joints_cam": joints, "subject": frames.subject[i], "action": frames.action[i],
                                   "camera": frames.camera[i]}))
    return out


def mpii_as_h36m(instances: list[Instance]) -> list[Instance]:
    """MPII instances (16 joints) relabelled to the 17 H36M joints for mixed 2-D/3-D training;
    the H36M spine has no MPII counterpart and stays unlabelled; no depth."""
    out = []
    for inst in instances:
        kps, vis = np.zeros((17, 2)), np.zeros(17)
        for m, h in MPII_TO_H36M.items():
            kps[h], vis[h] = inst.keypoints[m], inst.visible[m]
        out.append(Instance(inst.image_path, inst.image_id, inst.box, kps, vis, inst.score, inst.area, inst.record))
    return out


@dataclass
class PoseSet:
    """Paired 2-D/3-D poses for lifting: ``joints_2d`` (N, 17, 2) px, ``joints_cam`` (N, 17, 3)
    camera coordinates in mm, ``image_size`` (N, 2) as (w, h), and labels per pose."""

    joints_2d: np.ndarray
    joints_cam: np.ndarray
    image_size: np.ndarray
    subject: list[str]
    action: list[str]
    camera: list[str]
    generated: bool = False


def load_h36m_poses(data_3d: str | Path, cameras: str | Path, subjects: tuple[str, ...],
                    data_2d: str | Path | None = None, stride: int = 1) -> PoseSet:
    """Layout (b): ``data_3d_h36m.npz`` (``positions_3d``: {subject: {action: (T, 32, 3)}},
    world coordinates in metres) seen through each of the subject's 4 cameras. 2-D inputs
    come from ``data_2d`` (``positions_2d``: {subject: {action: [4 × (T, 17, 2)]}}, camera
    order as ``CAMERA_IDS``) when given, else from projecting the 3-D joints (ground truth)."""
    path = Path(data_3d)
    if not path.is_file():
        raise DataError(f"Human3.6M 3-D file not found: {path}")
    positions = np.load(path, allow_pickle=True)["positions_3d"].item()
    pos2d = np.load(data_2d, allow_pickle=True)["positions_2d"].item() if data_2d else None
    cams = load_cameras(cameras)
    out: dict[str, list] = {k: [] for k in ("j2", "j3", "size", "subject", "action", "camera")}
    for subject in subjects:
        if subject not in positions:
            raise DataError(f"{path}: no subject {subject}")
        for action, world in positions[subject].items():
            world = np.asarray(world, float)[::stride]
            if world.shape[1] == 32:
                world = world[:, FROM_32]
            for ci, cid in enumerate(CAMERA_IDS):
                cam = cams[(subject, cid)]
                x_cam = cam.world_to_camera(world)
                j2 = np.asarray(pos2d[subject][action][ci], float)[::stride] if pos2d else cam.project(x_cam)
                n = min(len(j2), len(x_cam))
                out["j2"].append(j2[:n])
                out["j3"].append(x_cam[:n] * 1000.0)
                out["size"].append(np.tile([cam.width, cam.height], (n, 1)))
                out["subject"] += [subject] * n
                out["action"] += [action.split(" ")[0]] * n
                out["camera"] += [cid] * n
    return PoseSet(np.concatenate(out["j2"]), np.concatenate(out["j3"]), np.concatenate(out["size"]),
                   out["subject"], out["action"], out["camera"])


# --- generated skeletons --------------------------------------------------------------------

# Mean bone lengths (mm) of the H36M 17-joint skeleton (subject S1 of the fixture), child joint j.
BONE_MM = {1: 133, 2: 443, 3: 454, 4: 133, 5: 443, 6: 454, 7: 233, 8: 257, 9: 121, 10: 115, 11: 151, 12: 279,
           13: 252, 14: 151, 15: 279, 16: 252}
# Rest directions in the body frame (x: the person's left, y: forward, z: up).
_REST = {1: (-1, 0, 0), 2: (0, 0, -1), 3: (0, 0, -1), 4: (1, 0, 0), 5: (0, 0, -1), 6: (0, 0, -1), 7: (0, 0, 1),
         8: (0, 0, 1), 9: (0, 0.25, 1), 10: (0, 0.1, 1), 11: (1, 0, 0), 12: (0, 0, -1), 13: (0, 0, -1),
         14: (-1, 0, 0), 15: (0, 0, -1), 16: (0, 0, -1)}
ACTIONS = ("Standing", "Walking", "Sitting", "Crouching", "Reaching")


def _rot(axis: str, a: np.ndarray) -> np.ndarray:
    """Batch of rotation matrices (n, 3, 3) about a body axis by angles ``a`` (radians)."""
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "x":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m), (0, 1), (-2, -1))


def generate_skeletons(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[str]]:
    """``n`` plausible 3-D poses (n, 17, 3) in mm, body frame (z up, root at origin), and an
    action label each. Bone lengths of the H36M skeleton scaled per person (±10%, ±3% per bone,
    left/right equal); joint angles drawn within anatomical limits, per action-like mode
    (standing, walking, sitting, crouching, reaching), then a random heading and small tilt."""
    deg = np.deg2rad
    mode = rng.integers(0, len(ACTIONS), n)
    u = lambda lo, hi: rng.uniform(deg(lo), deg(hi), n)  # noqa: E731
    hip_lo = np.choose(mode, [-10, -30, 70, 60, -20])
    hip_hi = np.choose(mode, [20, 40, 110, 120, 60])
    knee_lo = np.choose(mode, [0, 0, 70, 90, 0])
    knee_hi = np.choose(mode, [15, 70, 110, 150, 40])
    angles = {}
    for side, sign in (("r", -1), ("l", 1)):
        angles[f"hip_flex_{side}"] = rng.uniform(deg(hip_lo), deg(hip_hi))
        angles[f"hip_abd_{side}"] = sign * u(-5, 35)
        angles[f"knee_{side}"] = rng.uniform(deg(knee_lo), deg(knee_hi))
        reach = mode == 4
        angles[f"sh_flex_{side}"] = np.where(reach, u(40, 170), u(-40, 90))
        angles[f"sh_abd_{side}"] = sign * u(0, 100)
        angles[f"elbow_{side}"] = u(0, 140)
    spine_flex = np.where(mode == 3, u(10, 50), u(-10, 30))
    spine_side, spine_twist = u(-15, 15), u(-30, 30)
    neck_flex, neck_twist = u(-30, 30), u(-50, 50)

    size = rng.uniform(0.9, 1.1, n)
    lengths = {j: BONE_MM[j] * size * rng.normal(1, 0.03, n) for j in BONE_MM}
    for a, b in ((4, 1), (5, 2), (6, 3), (14, 11), (15, 12), (16, 13)):
        lengths[a] = lengths[b]

    eye = np.broadcast_to(np.eye(3), (n, 3, 3))
    frames = {0: eye}
    torso = _rot("z", spine_twist) @ _rot("y", spine_side) @ _rot("x", spine_flex)
    local = {7: torso, 8: _rot("x", spine_flex * 0.3), 9: _rot("z", neck_twist) @ _rot("x", neck_flex), 10: eye}
    for side, hip, knee, ankle, sh, elbow, wrist in (("r", 1, 2, 3, 14, 15, 16), ("l", 4, 5, 6, 11, 12, 13)):
        local[hip] = eye
        local[knee] = _rot("y", angles[f"hip_abd_{side}"]) @ _rot("x", angles[f"hip_flex_{side}"])
        local[ankle] = _rot("x", -angles[f"knee_{side}"])
        local[sh] = eye
        local[elbow] = _rot("y", angles[f"sh_abd_{side}"]) @ _rot("x", angles[f"sh_flex_{side}"])
        local[wrist] = _rot("x", angles[f"elbow_{side}"])
    pos = np.zeros((n, 17, 3))
    for j in range(1, 17):
        parent = PARENTS[j]
        frames[j] = frames[parent] @ local[j]
        direction = np.asarray(_REST[j], float)
        direction = direction / np.linalg.norm(direction)
        pos[:, j] = pos[:, parent] + (frames[j] @ direction) * lengths[j][:, None]
    heading = _rot("z", rng.uniform(-np.pi, np.pi, n)) @ _rot("x", u(-5, 5)) @ _rot("y", u(-5, 5))
    pos = np.einsum("nij,nkj->nki", heading, pos)
    return pos, [ACTIONS[m] for m in mode]


def generate_pose_set(n: int, cameras: dict[tuple[str, str], Camera], subjects: tuple[str, ...],
                      seed: int = 0) -> PoseSet:
    """``n`` generated poses placed on the floor of the capture volume and seen through a random
    camera of a random subject among ``subjects`` (real calibrations from ``cameras.pkl``);
    poses not fully inside the image are redrawn. Labelled ``generated=True``."""
    rng = np.random.default_rng(seed)
    keys = [k for k in cameras if k[0] in subjects]
    if not keys:
        raise DataError(f"no cameras for subjects {subjects}")
    j2, j3, size, subj, act, cam_ids = [], [], [], [], [], []
    need = n
    while need > 0:
        body, actions = generate_skeletons(need * 2, rng)
        for pose, action in zip(body, actions):
            key = keys[rng.integers(len(keys))]
            cam = cameras[key]
            centre = np.mean([cameras[k].T for k in keys if k[0] == key[0]], axis=0)
            world = pose / 1000.0
            world = world + np.array([centre[0] + rng.uniform(-1, 1), centre[1] + rng.uniform(-1, 1),
                                      -world[:, 2].min()])
            x_cam = cam.world_to_camera(world)
            uv = cam.project(x_cam)
            if x_cam[:, 2].min() <= 0.5 or uv.min() < 0 or (uv >= [cam.width, cam.height]).any():
                continue
            j2.append(uv)
            j3.append(x_cam * 1000.0)
            size.append([cam.width, cam.height])
            subj.append(key[0]); act.append(action); cam_ids.append(key[1])
            need -= 1
            if need == 0:
                break
    return PoseSet(np.stack(j2), np.stack(j3), np.asarray(size, float), subj, act, cam_ids, generated=True)
