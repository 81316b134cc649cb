"""The end-to-end top-down model (Table 2(c)): NMS, proposals, RoIs, both heads' targets against
their decoders, training on its own proposals, and the model through train, predict and ONNX."""
import json

import numpy as np
import pytest
import torch

from rlepose.cli import main
from rlepose.losses import build_loss
from rlepose.losses.rcnn import box_iou_xyxy, heatmap_targets, rcnn_loss, sample_rois
from rlepose.models.rcnn import RCNNConfig, build_rcnn_model, nms_mask
from rlepose.models.roi import box_nms


def _boxes(rng, n):
    xy = rng.uniform(0, 80, (n, 2))
    return torch.from_numpy(np.concatenate([xy, xy + rng.uniform(10, 40, (n, 2))], 1)).float()


def test_fixed_shape_nms_keeps_what_greedy_nms_keeps():
    rng = np.random.default_rng(0)
    for _ in range(5):
        boxes, scores = _boxes(rng, 30), torch.from_numpy(rng.random(30)).float()
        order = torch.argsort(scores, descending=True)
        keep = nms_mask(boxes[order][None], 0.4)[0]
        assert sorted(order[keep].tolist()) == sorted(box_nms(boxes, scores, 0.4).tolist())


def _batch():
    return {"boxes": torch.tensor([[[10., 10, 60, 120], [70, 20, 120, 110]], [[30, 30, 90, 100], [0, 0, 0, 0]]]),
            "person_mask": torch.tensor([[True, True], [True, False]]),
            "keypoints": torch.rand(2, 2, 17, 2, generator=torch.Generator().manual_seed(0)) * 50 + 30,
            "keypoint_weight": torch.ones(2, 2, 17), "crowd": torch.zeros(2, 1, 4),
            "crowd_mask": torch.zeros(2, 1, dtype=torch.bool)}


def test_proposals_are_sorted_suppressed_and_padded_with_empty_slots():
    torch.manual_seed(0)
    model = build_rcnn_model("resnet18_0.5", 17, RCNNConfig(keypoint_channels=16, keypoint_convs=2)).eval()
    out, _ = model.detector.dense(torch.randn(2, 3, 64, 64))
    out["score_logits"] = torch.randn_like(out["score_logits"]) * 3
    scores, boxes = model.proposals(out, 10, score_threshold=0.5)
    assert scores.shape == (2, 10) and boxes.shape == (2, 10, 4)
    for s, b in zip(scores, boxes):
        live = s > 0
        assert (s[live] >= 0.5).all() and (s[:-1] >= s[1:]).all()
        iou = box_iou_xyxy(b[live], b[live]) - torch.eye(int(live.sum()))
        assert (iou <= model.cfg.nms_iou + 1e-6).all()
    rois = model.rois(torch.tensor([1]), torch.tensor([[10.0, 20.0, 30.0, 60.0]]))
    assert rois.tolist() == [[1.0, 8.0, 16.0, 32.0, 64.0]]  # 1.2× about the centre (20, 40)


def test_heatmap_targets_and_the_heatmap_decoder_agree():
    """The label's cell, made the peak of a map, decodes back to within a cell of the label."""
    torch.manual_seed(0)
    model = build_rcnn_model("resnet18_0.5", 17, RCNNConfig(head="heatmap", keypoint_channels=16, keypoint_convs=1))
    rois = torch.tensor([[0, 10.0, 20.0, 66.0, 132.0], [0, 0.0, 0.0, 56.0, 56.0]])
    labels = rois[:, None, 1:3] + torch.rand(2, 17, 2) * (rois[:, None, 3:5] - rois[:, None, 1:3]) * 0.98
    target, counted = heatmap_targets(rois, labels, torch.ones(2, 17), 56)
    assert counted.all()
    logits = torch.full((2, 17, 56 * 56), -10.0).scatter(-1, target[..., None], 10.0).view(2, 17, 56, 56)
    keypoints, confidence, sigma = model.decode((logits,), rois)
    cell = (rois[:, None, 3:5] - rois[:, None, 1:3]) / 56
    assert ((keypoints - labels).abs() <= cell * 0.75 + 1e-4).all()  # rounding + the quarter-cell shift
    assert (confidence > 0.99).all() and (sigma == 0).all()
    outside = heatmap_targets(rois, rois[:, None, 1:3] - 5, torch.ones(2, 17), 56)[1]
    assert not outside.any()  # labels outside the RoI do not count


def test_rle_head_decodes_its_own_targets():
    model = build_rcnn_model("resnet18_0.5", 17, RCNNConfig(keypoint_channels=16, keypoint_convs=1))
    rois = torch.tensor([[0, 10.0, 20.0, 66.0, 132.0]])
    labels = torch.rand(1, 17, 2) * 100
    centre, extent = (rois[:, None, 1:3] + rois[:, None, 3:5]) / 2, rois[:, None, 3:5] - rois[:, None, 1:3]
    sigma = torch.full((1, 17, 2), 0.1)
    keypoints, confidence, sigma_px = model.decode(((labels - centre) / extent, sigma), rois)
    assert torch.allclose(keypoints, labels, atol=1e-4) and torch.allclose(confidence, torch.full((1, 17), 0.9))
    assert torch.allclose(sigma_px, 0.1 * extent.expand(1, 17, 2))


def test_integral_head_places_each_joint_at_its_maps_expected_cell():
    """µ̂ of ``integral`` = Σ softmax(map) · (cell index / side − ½) per axis, by an explicit sum over
    the head's own maps, and those maps are the heatmap head's (same layers, same shapes)."""
    torch.manual_seed(0)
    model = build_rcnn_model("resnet18_0.5", 17, RCNNConfig(head="integral", keypoint_channels=16, keypoint_convs=1))
    features = torch.randn(3, 64, 14, 14)
    mu, sigma = model.head(features)
    x = model.head.convs(features)
    maps = torch.nn.functional.interpolate(model.head.deconv(x), scale_factor=2, mode="bilinear", align_corners=False)
    assert maps.shape == (3, 17, 56, 56) and mu.shape == sigma.shape == (3, 17, 2)
    prob = maps.flatten(2).softmax(-1).view_as(maps).double()
    cells = (torch.arange(56, dtype=torch.float64) / 56 - 0.5)
    expected = torch.stack([(prob.sum(2) * cells).sum(-1), (prob.sum(3) * cells).sum(-1)], -1)
    assert torch.allclose(mu.double(), expected, atol=1e-6)
    assert torch.allclose(sigma, torch.full_like(sigma, 0.5), atol=0.05)  # σ̂ starts near sigmoid(0)
    with pytest.raises(ValueError, match="integral"):
        RCNNConfig(head="integrall")


def test_keypoint_head_trains_on_its_own_proposals_and_true_boxes():
    batch = _batch()
    image, boxes, person = sample_rois(torch.zeros(2, 4, 4), batch, 0.5, 8)
    assert image.tolist() == [0, 0, 1] and person.tolist() == [0, 1, 0]  # no proposal overlaps: the true boxes
    for head in ("rle", "heatmap", "integral"):
        torch.manual_seed(0)
        model = build_rcnn_model("resnet18_0.5", 17, RCNNConfig(head=head, keypoint_channels=16, keypoint_convs=2))
        loss = build_loss("rle", 2, compile=False)
        opt = torch.optim.Adam([*model.parameters(), *loss.parameters()], lr=1e-3)
        images = torch.randn(2, 3, 128, 128)
        values = []
        for _ in range(8):
            total, parts = rcnn_loss(model, images, batch, loss)
            opt.zero_grad()
            total.backward()
            opt.step()
            values.append(float(parts["keypoints"]))
        assert parts["rois"] >= 3 and values[-1] < values[0], (head, values)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`rlepose train` on a few rendered images: a checkpoint of each head."""
    root = tmp_path_factory.mktemp("rcnn")
    out = {}
    for head in ("rle", "heatmap", "integral"):
        assert main(["train", "configs/embedded/rcnn_res18_rle.yaml", f"name=rcnn_{head}", f"rcnn.head={head}",
                     f"data.root={root / 'data'}", "data.rendered=[16,6]", "train.epochs=1", "train.milestones=[1]",
                     "train.val_every=1", "data.batch_size=8", "data.num_workers=0", f"train.out_dir={root / 'runs'}",
                     "rcnn.keypoint_channels=16", "rcnn.keypoint_convs=2"]) == 0
        out[head] = root / "runs" / f"rcnn_{head}" / "checkpoints" / "last.ckpt"
    return out, root


def test_trained_model_predicts_people_without_a_detector_and_exports(trained, tmp_path):
    pytest.importorskip("onnxruntime")
    from rlepose.inference.export import export_checkpoint
    from rlepose.inference.predictor import OneStagePredictor, PosePredictor

    checkpoints, root = trained
    image = root / "data" / "val" / "val_000000.jpg"
    for head, ckpt in checkpoints.items():
        predictor = PosePredictor.from_checkpoint(ckpt, backend="torch", precision="fp32", box_threshold=0.0)
        assert isinstance(predictor, OneStagePredictor) and not predictor.needs_boxes
        people = predictor(image)
        assert all(p.keypoints.shape == (17, 2) for p in people)
        assert all((p.sigma is None) == (head == "heatmap") for p in people)
        graph = export_checkpoint(ckpt, tmp_path / f"{head}.onnx")
        onnx = PosePredictor.from_onnx(graph, box_threshold=0.0)(image)
        assert len(onnx) == len(people)
        for a, b in zip(people, onnx):  # 1e-4 of the 128-pixel input, in the 256-pixel image
            assert np.abs(a.keypoints - b.keypoints).max() < 0.0256 and abs(a.score - b.score) < 1e-4
    assert main(["eval", "configs/embedded/rcnn_res18_rle.yaml", f"data.root={root / 'data'}", "data.rendered=[16,6]",
                 "rcnn.keypoint_channels=16", "rcnn.keypoint_convs=2", "data.num_workers=0",
                 "--checkpoint", str(checkpoints["rle"]), "--results", str(tmp_path / "results.json")]) == 0
    assert all(r["category_id"] == 1 for r in json.loads((tmp_path / "results.json").read_text()))
    out = tmp_path / "p.json"
    assert main(["predict", str(image), "--checkpoint", str(checkpoints["rle"]), "--out", str(out),
                 "--box-threshold", "0", "--render", str(tmp_path / "drawn")]) == 0
    assert all(len(r["keypoints"]) == 51 for r in json.loads(out.read_text()))
    assert (tmp_path / "drawn" / "val_000000.jpg").is_file()


def test_the_demo_config_is_the_config_file(tmp_path):
    from rlepose.config import config_to_dict, load_config
    from rlepose.demo import one_stage_config

    in_code = one_stage_config(tmp_path, seed=2, task="rcnn")
    from_file = load_config("configs/embedded/rcnn_res18_rle.yaml", [
        f"data.root={tmp_path / 'data'}", f"train.out_dir={tmp_path / 'runs'}", "train.seed=2"])
    assert config_to_dict(in_code) == config_to_dict(from_file)


def test_demo_shows_the_model_finding_and_posing_people(trained, tmp_path, capsys):
    import cv2

    checkpoints, _ = trained
    out = tmp_path / "demo"
    assert main(["demo", "--rcnn", "--model", str(checkpoints["rle"]), "--val-images", "8", "--out", str(out)]) == 0
    assert "found by its own detector" in capsys.readouterr().out
    assert cv2.imread(str(out / "rcnn_predictions.png")).shape == (2 * 256, 4 * 256, 3)
    assert 0.0 <= json.loads((out / "rcnn_metrics.json").read_text())["metrics"]["AP"] <= 1.0
    assert main(["demo", "--rcnn", "--one-stage"]) == 2
    assert "not both" in capsys.readouterr().err
