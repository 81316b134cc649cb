"""Metrics against pycocotools called directly, hand-computed cases, and flip consistency."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch

from rlepose.data.datasets import load_coco_instances
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.evaluation.coco import coco_keypoint_ap, oks, oks_nms, pearson, postprocess, rescore
from rlepose.evaluation.evaluators import CocoEvaluator
from rlepose.evaluation.pckh import pckh
from rlepose.inference.flip import predict_crops, unflip
from rlepose.models import ModelConfig, build_pose_model

SIGMAS = np.asarray(COCO_KEYPOINTS.sigmas)


def _gt_results(fixtures, offset=None):
    ann = json.loads((fixtures / "coco/test_coco.json").read_text())
    rng = np.random.default_rng(0)
    results = []
    for a in ann["annotations"]:
        if a["num_keypoints"] == 0:
            continue
        kp = np.asarray(a["keypoints"], dtype=float).reshape(17, 3)
        if offset is not None:
            kp[:, :2] += rng.normal(0, offset, size=(17, 2)) * np.sqrt(a["area"]) / 10
        results.append({"image_id": a["image_id"], "category_id": 1, "score": 1.0,
                        "keypoints": np.concatenate([kp[:, :2], np.ones((17, 1))], 1).ravel().tolist()})
    return results


def test_ground_truth_as_predictions_gives_ap_one(fixtures):
    stats = coco_keypoint_ap(fixtures / "coco/test_coco.json", _gt_results(fixtures))
    assert stats["AP"] == pytest.approx(1.0) and stats["AP50"] == pytest.approx(1.0)


def test_perturbed_predictions_match_pycocotools_called_directly(fixtures):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = _gt_results(fixtures, offset=0.6)
    ours = coco_keypoint_ap(fixtures / "coco/test_coco.json", results)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(fixtures / "coco/test_coco.json"))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.evaluate(); ev.accumulate(); ev.summarize()
    assert 0.0 < ours["AP"] < 1.0
    assert [ours[k] for k in ("AP", "AP50", "AP75", "APM", "APL")] == pytest.approx(list(ev.stats[:5]))


def test_oks_matches_pycocotools_compute_oks(fixtures):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = _gt_results(fixtures, offset=1.0)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(fixtures / "coco/test_coco.json"))
        ev = COCOeval(gt, gt.loadRes(results), "keypoints")
        ev.params.maxDets = [100]
        ev._prepare()
    img = results[0]["image_id"]
    ious = ev.computeOks(img, 1)  # (dt, gt) for that image, dets sorted by score
    dts, gts = ev._dts[img, 1], ev._gts[img, 1]
    for gi, g in enumerate(gts):
        gk = np.asarray(g["keypoints"], float).reshape(17, 3)
        for di, d in enumerate(dts):
            dk = np.asarray(d["keypoints"], float).reshape(17, 3)
            if (gk[:, 2] > 0).any():
                assert oks(dk[:, :2], gk[:, :2], gk[:, 2], g["area"], SIGMAS) == pytest.approx(ious[di, gi])


def test_rescoring_and_oks_nms_by_hand():
    assert rescore(np.array([0.9, 0.1, 0.5]), 0.8) == pytest.approx(0.8 * 0.7)
    assert rescore(np.array([0.1, 0.1]), 0.8) == 0.0
    base = np.stack([np.linspace(0, 100, 17), np.linspace(0, 200, 17)], 1)
    poses = np.stack([base, base + 0.5, base + 60])  # #1 duplicates #0; #2 is another person
    keep = oks_nms(poses, np.array([0.5, 0.9, 0.7]), np.full(3, 20000.0), SIGMAS, 0.9)
    assert keep == [1, 2]
    results = postprocess(np.array([5, 5, 5]), poses, np.full((3, 17), 0.9), np.array([0.5, 0.9, 0.7]),
                          np.full(3, 20000.0), SIGMAS)
    assert len(results) == 2 and results[0]["score"] == pytest.approx(0.9 * 0.9)
    assert results[0]["keypoints"][:3] == pytest.approx([base[0, 0] + 0.5, base[0, 1] + 0.5, 0.9])


def test_pckh_by_hand():
    gt = np.zeros((2, 16, 2))
    pred = np.zeros((2, 16, 2))
    pred[0, :, 0] = 4.0   # sample 0: every joint 4 px off, head size 10 → 0.4
    pred[1, :, 0] = 0.8   # sample 1: 0.8 px off, head size 10 → 0.08
    vis = np.ones((2, 16))
    vis[1, 0] = 0  # right ankle of sample 1 unlabelled
    out = pckh(pred, gt, vis, np.array([10.0, 10.0]))
    assert out["PCKh@0.5"] == pytest.approx(1.0)
    # @0.1: sample 1 counts (14 joints without pelvis/thorax, one unlabelled → 13), sample 0 not
    assert out["PCKh@0.1"] == pytest.approx(13 / 27)
    assert out["PCKh@0.1/joint"][0] == pytest.approx(0.0) and out["PCKh@0.1/joint"][1] == pytest.approx(0.5)
    # AUC over α = 0, 0.01, …, 0.5: sample 1 hits from α ≥ 0.08 (43 of 51 steps), sample 0 from 0.4 (11)
    assert out["AUC"] == pytest.approx((13 * 43 + 14 * 11) / 27 / 51)


def test_pearson_matches_scipy():
    from scipy.stats import pearsonr

    x, y = np.random.default_rng(0).random((2, 50))
    assert pearson(x, y) == pytest.approx(pearsonr(x, y)[0])
    assert np.isnan(pearson(np.ones(5), y[:5]))


def test_flip_test_on_a_symmetric_input_is_consistent():
    torch.manual_seed(0)
    model = build_pose_model(ModelConfig("resnet18", "regression")).eval()
    half = torch.randn(2, 3, 64, 24)
    images = torch.cat([half, half.flip(-1)], -1)  # mirror-symmetric crops (64×48)
    perm = COCO_KEYPOINTS.flip_permutation()
    out = predict_crops(model, images, perm)
    # The average of f(x) and its mirror is its own mirror when x is symmetric.
    assert torch.allclose(unflip(out["keypoints"], perm, 48), out["keypoints"], atol=1e-5)
    assert torch.allclose(out["sigma"][:, perm], out["sigma"], atol=1e-6)
    plain = model.inference(images)
    expected = (plain["keypoints"] + unflip(plain["keypoints"], perm, 48)) / 2
    assert torch.allclose(out["keypoints"], expected, atol=1e-6)


def test_coco_evaluator_correlation_uses_each_prediction_oks(fixtures):
    inst = load_coco_instances(fixtures / "coco/test_coco.json", fixtures / "coco")
    ev = CocoEvaluator(fixtures / "coco/test_coco.json", inst, COCO_KEYPOINTS)
    rng = np.random.default_rng(0)
    noise = rng.uniform(0, 30, size=len(inst))  # per-instance error, in pixels
    kps = np.stack([i.keypoints + rng.normal(0, 1, (17, 2)) * n for i, n in zip(inst, noise)])
    gt_oks = np.array([oks(k, i.keypoints, i.visible, i.area, SIGMAS) for k, i in zip(kps, inst)])
    conf = gt_oks + rng.normal(0, 0.05, len(inst))
    metrics, results = ev(np.arange(len(inst)), kps, np.full((len(inst), 17), 0.9), conf)
    assert metrics["conf_oks_pearson"] == pytest.approx(np.corrcoef(conf, gt_oks)[0, 1])
    assert metrics["mean_oks"] == pytest.approx(gt_oks.mean())
    assert 0 <= metrics["AP"] <= 1 and len(results) <= len(inst)


def test_expected_keypoint_similarity_by_quadrature_and_sampling():
    """E exp(−d²/(2c²)) for independent Laplace coordinate errors: by quadrature of the 1-D
    closed form's integral, by Monte Carlo, and its limits (certain pose → 1)."""
    from scipy import integrate

    from rlepose.evaluation.coco import expected_keypoint_similarity, expected_oks

    sigmas = np.array([0.079, 0.107])
    area = np.array([90.0**2])
    scale = np.array([[[3.0, 6.0], [10.0, 2.0]]])  # (N=1, K=2, 2) pixels
    ours = expected_keypoint_similarity(scale, area, sigmas)[0]
    for k in range(2):
        c = np.sqrt(area[0]) * 2 * sigmas[k]
        per = [integrate.quad(lambda x, b=b: np.exp(-abs(x) / b) / (2 * b) * np.exp(-x * x / (2 * c * c)), -400, 400,
                              points=[0])[0] for b in scale[0, k]]
        assert ours[k] == pytest.approx(per[0] * per[1], rel=1e-6)
    rng = np.random.default_rng(0)
    err = rng.laplace(0.0, scale[0][None].repeat(400_000, 0))  # (M, K, 2)
    c2 = area[0] * (2 * sigmas) ** 2
    sampled = np.exp(-(err**2).sum(-1) / (2 * c2)).mean(0)
    assert np.allclose(ours, sampled, atol=2e-3)
    assert expected_oks(np.full((1, 2, 2), 1e-9), area, sigmas)[0] == pytest.approx(1.0)
    assert expected_oks(scale, area, sigmas, labelled=np.array([[True, False]]))[0] == pytest.approx(ours[0])
