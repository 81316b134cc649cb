"""The top-down transform against the image content itself and hand-computed geometry."""
import numpy as np
import pytest
import torch

from rlepose.data.keypoints import COCO_KEYPOINTS, KeypointSpec
from rlepose.data.transforms import (TopDownTransform, TransformConfig, affine_matrix, apply_affine,
                                     box_to_center_size, half_body_box)
from rlepose.data.transforms import crop_to_image


def test_box_to_center_size_by_hand():
    c, s = box_to_center_size(np.array([10, 20, 30, 80]), aspect_ratio=0.75, padding=1.25)
    assert c.tolist() == [25, 60]
    assert s.tolist() == pytest.approx([60 * 1.25, 80 * 1.25])  # widened to 3:4, then padded
    c, s = box_to_center_size(np.array([0, 0, 90, 60]), aspect_ratio=0.75, padding=1.0)
    assert s.tolist() == pytest.approx([90, 120])


def _dot_image(points, shape=(300, 400)):
    """An image that is black but for small distinct bright dots at ``points``."""
    img = np.zeros((*shape, 3), np.uint8)
    for i, (x, y) in enumerate(points):
        yy, xx = np.mgrid[:shape[0], :shape[1]]
        blob = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * 1.5**2))
        img[..., i % 3] = np.maximum(img[..., i % 3], (255 * blob).astype(np.uint8))
    return img


@pytest.mark.parametrize("rotation,flip", [(0.0, False), (25.0, False), (-40.0, True), (90.0, True)])
def test_keypoints_follow_the_warped_image(rotation, flip):
    """Warp an image of dots; each dot's brightest crop pixel is where apply_affine sends it."""
    pts = np.array([[150.0, 120.0], [230.0, 160.0], [190.0, 210.0]])
    img = _dot_image(pts)
    import cv2
    m = affine_matrix(np.array([190.0, 160.0]), np.array([180.0, 240.0]), rotation, (256, 192),
                      flip_width=img.shape[1] if flip else None)
    crop = cv2.warpAffine(img, m, (192, 256), flags=cv2.INTER_LINEAR)
    mapped = apply_affine(pts, m)
    for i, p in enumerate(mapped):
        channel = crop[..., i % 3].astype(float)
        y, x = np.unravel_index(channel.argmax(), channel.shape)
        assert np.hypot(x - p[0], y - p[1]) <= 1.0


def test_eval_transform_targets_and_inverse_mapping():
    spec = COCO_KEYPOINTS
    t = TopDownTransform(TransformConfig(), spec, train=False)
    box = np.array([100.0, 50.0, 60.0, 160.0])
    kps = np.random.default_rng(0).uniform([100, 50], [160, 210], size=(17, 2))
    kps[0] = [130.0, 130.0]  # the box centre maps to the crop centre: normalized (0, 0)
    out = t(np.zeros((300, 300, 3), np.uint8), box, kps, np.ones(17))
    assert out["image"].shape == (3, 256, 192)
    assert out["target"][0].tolist() == pytest.approx([0.0, 0.0], abs=1e-6)
    back = crop_to_image(out["target"].numpy()[None].astype(np.float64), out["matrix"].numpy()[None], (256, 192))[0]
    assert np.allclose(back, kps, atol=1e-3)


def test_training_flip_swaps_pairs_and_inverse_maps_back():
    spec = COCO_KEYPOINTS
    cfg = TransformConfig(flip_prob=1.0, rotation_prob=1.0, half_body_prob=0.0, color_jitter=0.0)
    t = TopDownTransform(cfg, spec, train=True)
    kps = np.random.default_rng(1).uniform([100, 50], [160, 210], size=(17, 2))
    vis = np.ones(17)
    vis[3] = 0  # left ear unlabelled: after the flip its weight moves to slot 4 (right ear)
    out = t(np.zeros((300, 320, 3), np.uint8), np.array([100.0, 50.0, 60.0, 160.0]), kps, vis,
            np.random.default_rng(2))
    assert out["flipped"] and out["target_weight"][4] == 0 and out["target_weight"][3] == 1
    back = crop_to_image(out["target"].numpy()[None].astype(np.float64), out["matrix"].numpy()[None], (256, 192))[0]
    perm = spec.flip_permutation()
    assert np.allclose(back, kps[perm], atol=1e-3)  # slot j holds the mirror joint's location


def test_keypoints_outside_the_crop_stay_unless_configured():
    kps = np.array([[130.0, 130.0], [1000.0, 130.0]])
    spec = KeypointSpec("two", ("a", "b"))
    box = np.array([100.0, 50.0, 60.0, 160.0])
    kept = TopDownTransform(TransformConfig(), spec, train=False)(np.zeros((300, 300, 3), np.uint8), box, kps, np.ones(2))
    assert kept["target_weight"].tolist() == [1, 1] and kept["target"][1, 0] > 0.5
    cut = TopDownTransform(TransformConfig(keep_outside=False), spec, train=False)(
        np.zeros((300, 300, 3), np.uint8), box, kps, np.ones(2))
    assert cut["target_weight"].tolist() == [1, 0]


def test_half_body_box_by_hand():
    spec = KeypointSpec("t", tuple("abcd"), upper_body=(0, 1))
    kps = np.array([[0.0, 0.0], [10.0, 40.0], [100.0, 100.0], [120.0, 160.0]])
    rng = np.random.default_rng(0)
    c, s = half_body_box(kps, np.array([True, True, False, False]), spec, aspect_ratio=0.75, rng=rng)
    assert c.tolist() == [5.0, 20.0] and s.tolist() == pytest.approx([30 * 1.5, 40 * 1.5])


def test_augmentation_is_reproducible_from_a_seed():
    t = TopDownTransform(TransformConfig(), COCO_KEYPOINTS, train=True)
    img = (np.random.default_rng(0).random((200, 200, 3)) * 255).astype(np.uint8)
    args = (img, np.array([50.0, 40.0, 80.0, 120.0]), np.full((17, 2), 90.0), np.ones(17))
    a, b = t(*args, np.random.default_rng(5)), t(*args, np.random.default_rng(5))
    assert (a["image"] == b["image"]).all() and a["rotation"] == b["rotation"]


def _jitter_by_steps(image, strength, rng):
    """Brightness, contrast about the mean, saturation about each pixel's gray, step by step."""
    img = image.astype(np.float64)
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    img = img * b
    img = (img - img.mean()) * c + img.mean()
    gray = img.mean(axis=2, keepdims=True)
    img = (img - gray) * s + gray
    return np.clip(img, 0, 255).astype(np.uint8)


def test_color_jitter_is_the_three_steps_in_one_pass():
    from rlepose.data.transforms import color_jitter

    r = np.random.default_rng(0)
    diffs = []
    for i in range(20):
        image = r.integers(0, 256, (40, 30, 3), dtype=np.uint8)
        ours = color_jitter(image, 0.4, np.random.default_rng(i)).astype(int)
        diffs.append(ours - _jitter_by_steps(image, 0.4, np.random.default_rng(i)).astype(int))
    diff = np.stack(diffs)
    # one level at most, where float32 rounding meets a truncation boundary; no bias
    assert np.abs(diff).max() <= 1 and (diff != 0).mean() < 0.15 and abs(diff.mean()) < 0.03


def test_uint8_crops_from_bgr_images_normalize_to_the_float_batch(fixtures):
    """The training loader's path (BGR decode, crop converted, uint8 out, normalized on the device)
    gives the batch of the RGB float path to 1e-6, with the same augmentation draws."""
    from rlepose.data.datasets import TopDownDataset, collate_skip_none, load_coco_instances
    from rlepose.data.transforms import normalize_images

    ann = fixtures / "coco/test_coco.json"
    instances = load_coco_instances(ann, fixtures / "coco")
    cfg = TransformConfig(input_size=(64, 48))
    plain = TopDownDataset(instances, TopDownTransform(cfg, COCO_KEYPOINTS, True), seed=3)
    fast = TopDownDataset(instances, TopDownTransform(cfg, COCO_KEYPOINTS, True, uint8=True), seed=3)
    a = collate_skip_none([plain[i] for i in range(len(instances))])
    b = collate_skip_none([fast[i] for i in range(len(instances))])
    assert b["image"].dtype == torch.uint8 and a["image"].dtype == torch.float32
    assert torch.allclose(normalize_images(b["image"]), a["image"], atol=1e-6, rtol=0)
    assert torch.equal(a["target"], b["target"]) and torch.equal(a["matrix"], b["matrix"])
    assert normalize_images(a["image"]) is a["image"]  # float batches pass through
