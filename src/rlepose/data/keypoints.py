"""Keypoint sets: names, skeleton, flip pairs and OKS sigmas. Custom sets (animals, hands,
faces) are declared the same way, from code or from a small YAML/dict config."""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KeypointSpec", "COCO_KEYPOINTS", "MPII_KEYPOINTS"]


@dataclass(frozen=True)
class KeypointSpec:
    """``skeleton`` and ``flip_pairs`` use 0-based joint indices. ``sigmas`` are the per-joint
    OKS constants (COCO's are the standard deviation of annotator error / object scale);
    ``upper_body`` lists the joints for half-body augmentation (the rest count as lower body).
    ``name`` is informative only."""

    name: str
    joints: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...] = ()
    flip_pairs: tuple[tuple[int, int], ...] = ()
    sigmas: tuple[float, ...] = ()
    upper_body: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        k = len(self.joints)
        if self.sigmas and len(self.sigmas) != k:
            raise ValueError(f"{self.name}: {len(self.sigmas)} OKS sigmas for {k} joints")
        for a, b in (*self.skeleton, *self.flip_pairs):
            if not (0 <= a < k and 0 <= b < k):
                raise ValueError(f"{self.name}: joint index out of range in pair ({a}, {b}) for {k} joints")

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def flip_permutation(self) -> list[int]:
        """Index map so that ``flipped[:, perm]`` swaps left and right joints."""
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm

    @classmethod
    def from_dict(cls, d: dict) -> "KeypointSpec":
        """From a config mapping with keys ``name``, ``joints``, and optionally ``skeleton``,
        ``flip_pairs``, ``sigmas``, ``upper_body`` (lists)."""
        unknown = set(d) - {"name", "joints", "skeleton", "flip_pairs", "sigmas", "upper_body"}
        if unknown:
            raise ValueError(f"unknown keypoint spec fields: {sorted(unknown)}")
        return cls(name=d.get("name", "custom"), joints=tuple(d["joints"]),
                   skeleton=tuple(tuple(p) for p in d.get("skeleton", ())),
                   flip_pairs=tuple(tuple(p) for p in d.get("flip_pairs", ())),
                   sigmas=tuple(float(s) for s in d.get("sigmas", ())),
                   upper_body=tuple(d.get("upper_body", ())))


COCO_KEYPOINTS = KeypointSpec(
    name="coco",
    joints=("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
            "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
            "right_knee", "left_ankle", "right_ankle"),
    skeleton=((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
              (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6)),
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    # pycocotools' COCOeval defaults (Params.setKpParams: [.26, .25, …] / 10)
    sigmas=(0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107,
            0.087, 0.087, 0.089, 0.089),
    upper_body=tuple(range(11)),
)

MPII_KEYPOINTS = KeypointSpec(
    name="mpii",
    joints=("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
            "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder",
            "left_elbow", "left_wrist"),
    skeleton=((0, 1), (1, 2), (2, 6), (3, 6), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (10, 11), (11, 12),
              (12, 7), (13, 7), (13, 14), (14, 15)),
    flip_pairs=((0, 5), (1, 4), (2, 3), (10, 15), (11, 14), (12, 13)),
    upper_body=(7, 8, 9, 10, 11, 12, 13, 14, 15),
)
