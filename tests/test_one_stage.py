"""The one-stage model (Table 2(d)): targets, loss terms, decoding, data, training, evaluation,
deployment. Truths: hand-computed assignments and boxes, closed forms, pycocotools on perfect
predictions, the PyTorch model against its ONNX graph."""
import json

import cv2
import numpy as np
import pytest
import torch

from rlepose.cli import main
from rlepose.config import ConfigError, config_to_dict, load_config
from rlepose.data.keypoints import COCO_KEYPOINTS
from rlepose.data.synthetic import SyntheticConfig, write_dataset
from rlepose.data.transforms import apply_affine
from rlepose.data.whole_image import (ImagePeople, WholeImageDataset, WholeImageTransform, collate_people,
                                      load_coco_images)
from rlepose.evaluation.coco import oks, oks_nms, rescore, rescore_many
from rlepose.evaluation.evaluators import OneStageCocoEvaluator
from rlepose.inference.one_stage import decode_people, people_to_image
from rlepose.inference.predictor import OneStagePredictor, PosePredictor
from rlepose.losses import L1Loss
from rlepose.losses.one_stage import assign_locations, giou_loss, one_stage_loss, sigmoid_focal_loss
from rlepose.models.one_stage import OneStageConfig, build_one_stage_model
from rlepose.training.one_stage import OneStageModule

CONFIG = "configs/embedded/one_stage_res18_rle.yaml"


def _grid(input_size=(128, 128)):
    model = build_one_stage_model("resnet18_0.25")
    h, w = input_size
    return model.grid([(h // s, w // s) for s in (8, 16, 32)], torch.device("cpu"))


def test_backbone_pyramids_have_strides_8_16_32_and_end_in_the_pose_features():
    from rlepose.models.pose_model import build_backbone

    for name in ("resnet18_0.5", "resnet50_0.25", "mobilenet_v2_0.5"):
        backbone = build_backbone(name).eval()
        x = torch.randn(1, 3, 96, 64)
        maps = backbone.forward_pyramid(x)
        assert [tuple(m.shape[-2:]) for m in maps] == [(12, 8), (6, 4), (3, 2)]
        assert [m.shape[1] for m in maps] == list(backbone.pyramid_channels)
        assert torch.equal(maps[-1], backbone.forward_features(x))
    with pytest.raises(ValueError, match="strides 8, 16 and 32"):
        build_one_stage_model("hrnet_w32")


def test_locations_sit_at_the_centres_of_their_cells():
    locations, reference, level = _grid()
    assert len(locations) == 16 * 16 + 8 * 8 + 4 * 4
    assert locations[0].tolist() == [3.5, 3.5]  # pixels 0..7 of stride 8: centre 3.5
    assert locations[1].tolist() == [11.5, 3.5] and locations[16].tolist() == [3.5, 11.5]
    assert locations[256].tolist() == [7.5, 7.5] and reference[256] == 128 and level[256] == 1
    assert reference[0] == 64 and reference[-1] == 256 and locations[-1].tolist() == [111.5, 111.5]


def test_assignment_by_hand():
    locations, reference, level = _grid()
    # a 60×100 person (size 100: nearest level reference 128, stride 16), centre (50, 60)
    boxes = torch.tensor([[20.0, 10.0, 80.0, 110.0]])
    owner, ignore = assign_locations(locations, reference, level, boxes, torch.zeros(0, 4), 1.5, 8.0)
    pos = torch.nonzero(owner == 0)[:, 0]
    expected = [i for i in range(len(locations)) if level[i] == 1 and abs(locations[i, 0] - 50) <= 24
                and abs(locations[i, 1] - 60) <= 24]
    assert pos.tolist() == expected and len(expected) == 9  # x in {39.5, 55.5, 71.5}, y in {39.5, 55.5, 71.5}
    assert not ignore.any()
    # a second person of a smaller box (95×60: size 95, also level 1) takes the locations both
    # claim; a crowd region ignores the locations inside it that are nobody's
    boxes = torch.tensor([[20.0, 10.0, 80.0, 110.0], [25.0, 40.0, 120.0, 100.0]])
    crowd = torch.tensor([[0.0, 0.0, 127.0, 20.0]])
    owner, ignore = assign_locations(locations, reference, level, boxes, crowd, 1.5, 8.0)
    shared = [i for i in expected if abs(locations[i, 0] - 72.5) <= 24 and abs(locations[i, 1] - 70) <= 24
              and locations[i, 1] >= 40]
    assert len(shared) == 4 and all(owner[i] == 1 for i in shared)
    assert all(owner[i] == 0 for i in expected if i not in shared)
    assert ignore.sum() > 0 and (owner[ignore] == -1).all()
    assert (locations[ignore, 1] <= 20).all()


def test_giou_and_focal_loss_closed_forms():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    assert giou_loss(a, a).item() == pytest.approx(0.0)
    # disjoint 2×2 boxes 2 apart: IoU 0, hull 6×2 = 12, union 8: GIoU = −4/12
    b = torch.tensor([[4.0, 0.0, 6.0, 2.0]])
    assert giou_loss(a, b).item() == pytest.approx(1 + 4 / 12)
    # half overlap: inter 2, union 6, hull = union
    c = torch.tensor([[1.0, 0.0, 3.0, 2.0]])
    assert giou_loss(a, c).item() == pytest.approx(1 - 2 / 6)
    logits, targets = torch.tensor([-1.0, 0.5, 2.0]), torch.tensor([0.0, 1.0, 1.0])
    p = torch.sigmoid(logits)
    p_t = torch.where(targets > 0, p, 1 - p)
    alpha_t = torch.where(targets > 0, torch.tensor(0.25), torch.tensor(0.75))
    assert torch.allclose(sigmoid_focal_loss(logits, targets), -alpha_t * (1 - p_t) ** 2 * torch.log(p_t))


def test_oks_nms_and_rescoring_by_hand():
    sigmas = np.array([0.1, 0.1])
    poses = np.array([[[0, 0], [10, 0]], [[1, 0], [11, 0]], [[50, 50], [60, 50]], [[0, 0], [10, 1]]], float)
    scores, areas = np.array([0.9, 0.8, 0.7, 0.95]), np.full(4, 100.0)
    # OKS per joint exp(-d²/8) here (area 100, (2σ)² = 0.04): pose 0 is 1 px off pose 3 on one
    # joint (OKS 0.941), pose 1 1 px and √2 px off (0.831), and 1 px off pose 0 on both (0.882)
    assert oks(poses[0], poses[3], np.ones(2), 100.0, sigmas) == pytest.approx((1 + np.exp(-1 / 8)) / 2)
    assert oks_nms(poses, scores, areas, sigmas, 0.8) == [3, 2]
    assert oks_nms(poses, scores, areas, sigmas, 0.9) == [3, 1, 2]
    assert oks_nms(poses, scores, areas, sigmas, 0.95) == [3, 0, 1, 2]
    # against the greedy loop written with the scalar oks(), on random poses
    rng = np.random.default_rng(0)
    poses, scores, areas = rng.normal(50, 5, (40, 17, 2)), rng.random(40), rng.uniform(500, 3000, 40)
    sig = np.asarray(COCO_KEYPOINTS.sigmas)
    for threshold in (0.3, 0.6, 0.9):
        order, keep = list(np.argsort(-scores, kind="stable")), []
        while order:
            i = order.pop(0)
            keep.append(i)
            order = [j for j in order if oks(poses[j], poses[i], np.ones(17), areas[i], sig) <= threshold]
        assert oks_nms(poses, scores, areas, sig, threshold) == keep
    conf = np.array([[0.1, 0.5, 0.9], [0.1, 0.15, 0.2]])
    assert rescore_many(conf, np.array([0.8, 1.0])).tolist() == pytest.approx([0.8 * 0.7, 0.0])
    assert rescore(conf[0], 0.8) == pytest.approx(0.56)


def test_loss_terms_and_gradients_reach_every_output():
    torch.manual_seed(0)
    model = build_one_stage_model("resnet18_0.25")
    out = model(torch.randn(2, 3, 128, 128))
    k = 17
    batch = collate_people([
        {"image": torch.zeros(3, 128, 128, dtype=torch.uint8), "matrix": torch.eye(3)[:2].double(), "index": 0,
         "image_id": 1, "boxes": torch.tensor([[20.0, 10.0, 80.0, 110.0]]), "keypoints": torch.full((1, k, 2), 50.0),
         "keypoint_weight": torch.ones(1, k), "crowd": torch.zeros(0, 4)},
        {"image": torch.zeros(3, 128, 128, dtype=torch.uint8), "matrix": torch.eye(3)[:2].double(), "index": 1,
         "image_id": 2, "boxes": torch.zeros(0, 4), "keypoints": torch.zeros(0, k, 2),
         "keypoint_weight": torch.zeros(0, k), "crowd": torch.tensor([[0.0, 0.0, 60.0, 60.0]])}])
    assert batch["person_mask"].tolist() == [[True], [False]] and batch["crowd_mask"].tolist() == [[False], [True]]
    total, parts = one_stage_loss(out, batch, L1Loss(), OneStageConfig())
    assert parts["positives"] == 9
    # the keypoint term is L1 on the 9 positives' offsets in reference units (128 px): per joint
    # |Δx| + |Δy|, averaged over the 9 × 17 joints
    pos = (out["level"] == 1) & ((out["locations"][:, 0] - 50).abs() <= 24) & ((out["locations"][:, 1] - 60).abs() <= 24)
    assert pos.sum() == 9
    offsets = (50.0 - out["locations"][pos]) / 128.0  # (9, 2), the same for every joint
    by_hand = (out["mu"][0, pos] - offsets[:, None]).abs().sum(-1).mean()
    assert parts["keypoints"].item() == pytest.approx(by_hand.item(), rel=1e-6)
    total.backward()
    for name in ("score", "box", "keypoints"):
        assert getattr(model.head, name).weight.grad.abs().sum() > 0
    assert model.head.sigma.weight.grad is None or model.head.sigma.weight.grad.abs().sum() == 0  # L1 ignores σ̂


def test_whole_image_transform_moves_points_with_the_pixels_and_swaps_sides_when_flipped():
    image = np.zeros((200, 300, 3), np.uint8)
    kps = np.zeros((1, 17, 2))
    kps[0, :, 0], kps[0, :, 1] = np.linspace(40, 260, 17), np.linspace(30, 170, 17)
    kps[0, 5] = [200.0, 60.0]  # left shoulder, marked white
    image[58:63, 198:203] = 255
    people = ImagePeople(None, 1, 300, 200, np.array([[30.0, 20.0, 240.0, 160.0]]), kps, np.ones((1, 17)),
                         np.zeros((0, 4)))
    for seed in range(6):
        t = WholeImageTransform((128, 128), COCO_KEYPOINTS, train=True, color_jitter=0.0, flip_prob=0.5)
        s = t(image, people, np.random.default_rng(seed))
        out = s["image"].numpy().transpose(1, 2, 0)
        ys, xs = np.nonzero(out[..., 0] > 100)
        flipped = s["matrix"][0, 0] < 0
        joint = 6 if flipped else 5  # the mirrored left shoulder is labelled right shoulder
        assert abs(xs.mean() - s["keypoints"][0, joint, 0]) < 1.0 and abs(ys.mean() - s["keypoints"][0, joint, 1]) < 1.0
        box = s["boxes"][0].numpy()
        corners = apply_affine(np.array([[30.0, 20.0], [270.0, 180.0]]), s["matrix"].numpy())
        assert np.allclose(box, np.clip(np.concatenate([corners.min(0), corners.max(0)]), 0, 127), atol=1e-4)


def test_coco_images_keep_every_person_and_crowd_region(fixtures, tmp_path):
    data = json.loads((fixtures / "coco/test_coco.json").read_text())
    data["annotations"][0]["iscrowd"] = 1  # the fixture has no crowd region: make one
    ann = tmp_path / "with_crowd.json"
    ann.write_text(json.dumps(data))
    images = load_coco_images(ann, fixtures / "coco", COCO_KEYPOINTS)
    assert len(images) == len(data["images"])
    for img in images:
        mine = [a for a in data["annotations"] if a["image_id"] == img.image_id and a["category_id"] == 1]
        assert len(img.boxes) == sum(not a.get("iscrowd", 0) for a in mine)  # with or without keypoints
        assert len(img.crowd) == sum(bool(a.get("iscrowd", 0)) for a in mine)
    crowd = next(i for i in images if len(i.crowd))
    assert crowd.crowd[0].tolist() == pytest.approx(data["annotations"][0]["bbox"])
    assert sum(len(i.boxes) for i in images) == len(data["annotations"]) - 1


def _rendered(tmp_path, n=12):
    ann = write_dataset(tmp_path / "data", SyntheticConfig(num_images=n, seed=5, max_people=3), "val")
    return ann, tmp_path / "data" / "val"


def test_perfect_dense_outputs_decode_to_ap_one_with_pycocotools(tmp_path):
    """Targets, decoding and the mapping back to image pixels are consistent: dense outputs that
    put every person's true box and keypoints on its assigned locations score AP 1 (on the images
    where every person owns a location: two people with nearly the same box share their centre
    locations, which go to the smaller box)."""
    ann, root = _rendered(tmp_path)
    dataset = WholeImageDataset(load_coco_images(ann, root, COCO_KEYPOINTS),
                                WholeImageTransform((96, 128), COCO_KEYPOINTS, train=False))
    locations, reference, level = _grid((96, 128))
    cfg = OneStageConfig()
    ids, people = [], []
    for sample in (dataset[i] for i in range(len(dataset))):
        owner, _ = assign_locations(locations, reference, level, sample["boxes"], sample["crowd"], 1.5, 8.0)
        assert (owner >= 0).sum() > 0 or len(sample["boxes"]) == 0
        pos = owner >= 0
        n = len(locations)
        dense = {"scores": pos.float().numpy(), "boxes": np.zeros((n, 4), np.float32),
                 "keypoints": np.zeros((n, 17, 2), np.float32), "joint_confidence": np.ones((n, 17), np.float32),
                 "sigma": np.ones((n, 17, 2), np.float32)}
        dense["boxes"][pos.numpy()] = sample["boxes"][owner[pos]].numpy()
        dense["keypoints"][pos.numpy()] = sample["keypoints"][owner[pos]].numpy()
        found = people_to_image(decode_people(dense, cfg), sample["matrix"].numpy())
        owners = set(owner[pos].tolist())
        assert len(found["score"]) == len(owners)  # NMS leaves one per person
        if len(owners) == len(sample["boxes"]):
            ids.append(sample["image_id"])
            people.append(found)
    assert len(ids) >= 10
    gt = json.loads(ann.read_text())
    gt["images"] = [i for i in gt["images"] if i["id"] in ids]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in ids]
    (tmp_path / "kept.json").write_text(json.dumps(gt))
    metrics, results = OneStageCocoEvaluator(tmp_path / "kept.json", COCO_KEYPOINTS)(ids, people)
    assert metrics["AP"] == pytest.approx(1.0) and len(results) == len(gt["annotations"])


def test_the_config_is_checked():
    cfg = load_config(CONFIG)
    assert "one_stage" in CONFIG and cfg.task == "one_stage" and cfg.loss.name == "rle"
    with pytest.raises(ConfigError, match="one_stage"):
        load_config(CONFIG, ["loss.name=heatmap_mse", "model.head=heatmap"])
    with pytest.raises(ConfigError, match=r"one_stage: unknown keys \['fpn_channel'\]"):
        load_config(CONFIG, ["one_stage.fpn_channel=3"])


def _one_stage_checkpoint(tmp_path, backbone="resnet18_0.25"):
    """An untrained one-stage model with its BN statistics and head moved off their start, and a
    score bias that makes many locations people."""
    torch.manual_seed(0)
    cfg = load_config(CONFIG, [f"model.backbone={backbone}"])
    module = OneStageModule.from_config(cfg)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
        for conv in (module.model.head.keypoints, module.model.head.sigma, module.model.head.score):
            conv.weight.normal_(0, 0.05)
        module.model.head.score.bias.fill_(1.0)
    path = tmp_path / "one_stage.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": {"config": config_to_dict(cfg)}}, path)
    return path, module


def test_onnx_graph_and_predictor_agree_with_pytorch(tmp_path, fixtures):
    ckpt, module = _one_stage_checkpoint(tmp_path)
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "m.onnx")]) == 0
    from rlepose.inference.backends import OnnxBackend

    backend = OnnxBackend(tmp_path / "m.onnx")
    x = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        expected = module.model.eval().inference(x)
    got = backend(x)
    assert len(got) == 5
    for name, value in zip(module.model.inference_outputs, got):  # pixels compared in units of the input size
        unit = 1.0 if name in ("scores", "joint_confidence") else 128.0
        assert torch.allclose(value / unit, expected[name] / unit, atol=1e-4, rtol=0), name
    image = str(fixtures / "coco/000000000785.jpg")
    a = PosePredictor.from_checkpoint(ckpt, backend="torch", precision="fp32")
    b = PosePredictor.from_checkpoint(ckpt, backend="onnxruntime", onnx_path=tmp_path / "m.onnx")
    assert isinstance(a, OneStagePredictor) and isinstance(b, OneStagePredictor) and not a.needs_boxes
    pa, pb = a(image), b(image)
    assert len(pa) == len(pb) > 0
    for p, q in zip(pa, pb):  # 1e-4 of the 640-pixel photo
        assert np.abs(p.keypoints - q.keypoints).max() < 0.064
        assert np.abs(np.array(p.bbox) - np.array(q.bbox)).max() < 0.064
        assert abs(p.score - q.score) < 1e-4 and abs(p.expected_oks - q.expected_oks) < 1e-4
    with pytest.raises(ValueError, match="no boxes"):
        a.predict(image, [[0, 0, 10, 10]])


def test_video_path_runs_the_one_stage_model_frame_by_frame(tmp_path):
    from rlepose.inference.media import predict_video

    ckpt, _ = _one_stage_checkpoint(tmp_path)
    ann, root = _rendered(tmp_path, n=5)
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (256, 256))
    for img in json.loads(ann.read_text())["images"]:
        writer.write(cv2.imread(str(root / img["file_name"])))
    writer.release()
    predictor = PosePredictor.from_checkpoint(ckpt, backend="torch")
    summary = predict_video(predictor, clip, tmp_path / "poses.json", frames_per_batch=2, progress=False,
                            smooth="none")
    results = json.loads((tmp_path / "poses.json").read_text())
    capture, frames = cv2.VideoCapture(str(clip)), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    single = [predictor.predict(f) for f in frames]
    assert summary["frames"] == 5 and len(results) == sum(len(s) for s in single) > 0
    for i, people in enumerate(single):
        mine = [r for r in results if r["frame"] == i]
        ranked = sorted(people, key=lambda p: -p.expected_oks)
        for r, p in zip(mine, ranked):
            # batched with another frame or alone: the same to 1e-4 of the 256-pixel frame
            assert np.abs(np.reshape(r["keypoints"], (-1, 3))[:, :2] - p.keypoints).max() < 0.0256


def test_predict_cli_draws_every_person_without_a_detector(tmp_path, fixtures, capsys):
    ckpt, _ = _one_stage_checkpoint(tmp_path)
    out, drawn = tmp_path / "p.json", tmp_path / "drawn"
    assert main(["predict", str(fixtures / "coco/000000000785.jpg"), "--checkpoint", str(ckpt), "--out", str(out),
                 "--render", str(drawn), "--backend", "torch"]) == 0
    results = json.loads(out.read_text())
    assert results and all(len(r["keypoints"]) == 51 and "bbox" in r for r in results)
    assert (drawn / "000000000785.jpg").is_file()
    printed = capsys.readouterr()
    assert "people found by the one-stage model itself (no detector; person probability ≥ 0.3)" in printed.out
    assert main(["predict", str(fixtures / "coco/000000000785.jpg"), "--checkpoint", str(ckpt), "--boxes",
                 str(fixtures / "coco/test_coco_det_AP_H_56.json")]) == 2


@pytest.mark.slow
def test_training_then_eval_reproduces_the_metrics(tmp_path):
    from rlepose.training.run import evaluate, train

    cfg = load_config(CONFIG, [f"data.root={tmp_path / 'data'}", "data.rendered=[24, 8]", "model.backbone=resnet18_0.25",
                               "train.epochs=2", "train.milestones=[1]", "train.val_every=1", "data.batch_size=8",
                               "data.num_workers=0", f"train.out_dir={tmp_path / 'runs'}"])
    module, trainer = train(cfg, enable_progress_bar=False, enable_model_summary=False, logger=False)
    assert set(module.last_metrics) >= {"AP", "AR", "conf_oks_pearson"}
    last = tmp_path / "runs" / cfg.name / "checkpoints" / "last.ckpt"
    again = evaluate(cfg, last, enable_progress_bar=False)
    assert again["AP"] == pytest.approx(module.last_metrics["AP"]) and again["AR"] == pytest.approx(module.last_metrics["AR"])
    state = torch.load(last, weights_only=False)["state_dict"]
    assert any(k.startswith("loss.flow.") for k in state)  # RLE's flow trains and is saved with the model


def test_the_demo_config_is_the_config_file(tmp_path):
    from rlepose.demo import one_stage_config

    in_code = one_stage_config(tmp_path, seed=3, loss="l1")
    from_file = load_config(CONFIG, [f"data.root={tmp_path / 'data'}", f"train.out_dir={tmp_path / 'runs'}",
                                     "train.seed=3", "loss.name=l1"])
    assert config_to_dict(in_code) == config_to_dict(from_file)


def test_demo_draws_the_one_stage_models_people(tmp_path, capsys):
    ckpt, _ = _one_stage_checkpoint(tmp_path)
    out = tmp_path / "demo"
    assert main(["demo", "--one-stage", "--model", str(ckpt), "--val-images", "8", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "every person of the 8 held-out images from the whole image (no detector)" in printed and "AP" in printed
    picture = cv2.imread(str(out / "one_stage_predictions.png"))
    assert picture.shape == (2 * 256, 4 * 256, 3)
    metrics = json.loads((out / "one_stage_metrics.json").read_text())["metrics"]
    assert 0.0 <= metrics["AP"] <= 1.0 and metrics["people_per_image"] > 0


def test_people_map_back_through_the_letterbox():
    from rlepose.data.whole_image import letterbox_matrix

    matrix = letterbox_matrix(300, 200, (128, 128))
    assert matrix[0, 0] == pytest.approx(128 / 300) and matrix[1, 1] == pytest.approx(128 / 300)
    image_points = np.array([[[10.0, 20.0], [290.0, 150.0]]])
    people = {"boxes": np.array([[0.0, 10.0, 64.0, 100.0]]), "keypoints": apply_affine(image_points, matrix),
              "sigma": np.full((1, 2, 2), 2.0), "score": np.ones(1)}
    back = people_to_image(people, matrix)
    assert np.allclose(back["keypoints"], image_points)
    assert np.allclose(back["sigma"], 2.0 * 300 / 128)  # input pixels → image pixels
    assert np.allclose(back["boxes"][0, [0, 2]], np.array([0.0, 64.0]) * 300 / 128 + _input_origin(matrix)[0])


def _input_origin(matrix):
    """Where the input's origin lies in the image (x, y)."""
    inv = np.linalg.inv(np.vstack([matrix, [0, 0, 1]]))
    return inv[:2, 2]


@pytest.mark.slow
def test_trains_and_evaluates_on_real_coco_photos(tmp_path, fixtures):
    """Whole COCO photos of different sizes, people with and without keypoints, pycocotools AP."""
    from rlepose.training.run import train

    root = fixtures / "coco"
    cfg = load_config(CONFIG, [f"data.root={root}", "data.rendered=null", "data.train_ann=test_coco.json",
                               "data.train_images=.", "data.val_ann=test_coco.json", "data.val_images=.",
                               "model.backbone=resnet18_0.25", "transform.input_size=[160, 160]", "train.epochs=1",
                               "train.milestones=[1]", "train.val_every=1", "data.batch_size=2", "data.num_workers=0",
                               f"train.out_dir={tmp_path}"])
    module, _ = train(cfg, enable_progress_bar=False, enable_model_summary=False, logger=False)
    assert 0.0 <= module.last_metrics["AP"] <= 1.0 and module.last_results
    assert {r["image_id"] for r in module.last_results} <= {i["id"] for i in json.loads((root / "test_coco.json").read_text())["images"]}


def test_demo_evaluates_the_shipped_one_stage_model(tmp_path, capsys):
    """`rlepose demo --one-stage`: the shipped int8 one-stage model (under 5 MB) on held-out images."""
    from rlepose.demo import SHIPPED_ONE_STAGE_MODEL
    from rlepose.hub import pretrained_checkpoint

    assert SHIPPED_ONE_STAGE_MODEL.is_file() and SHIPPED_ONE_STAGE_MODEL.stat().st_size < 5e6
    assert pretrained_checkpoint("demo-one-stage") == SHIPPED_ONE_STAGE_MODEL
    assert main(["demo", "--one-stage", "--out", str(tmp_path / "demo"), "--val-images", "12"]) == 0
    assert "The shipped one-stage RLE model" in capsys.readouterr().out
    summary = json.loads((tmp_path / "demo/one_stage_metrics.json").read_text())
    assert summary["metrics"]["AP"] > 0.15  # 12 images: noisy, but a working model (0.23 on all 300)
    assert not (tmp_path / "demo/data/train.json").exists()  # only the held-out images are rendered


def test_crop_analyses_refuse_a_one_stage_model_clearly(tmp_path, capsys):
    ckpt, _ = _one_stage_checkpoint(tmp_path)
    assert main(["analyze", "calibration", "--checkpoint", str(ckpt), "--config", CONFIG]) == 2
    assert "is a one_stage model; `rlepose analyze calibration` studies top-down models" in capsys.readouterr().err


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    """Two epochs straight, or one and then resumed from last.ckpt: the same weights (the order
    and each image's augmentation come from seed, epoch and index alone)."""
    from rlepose.training.run import train

    def config(name, epochs=2):
        return load_config(CONFIG, [f"data.root={tmp_path / 'data'}", "data.rendered=[12, 4]", f"name={name}",
                                    "model.backbone=resnet18_0.25", "transform.input_size=[96, 96]", f"train.epochs={epochs}",
                                    "train.milestones=[1]", "train.val_every=2", "data.batch_size=4", "data.num_workers=0",
                                    f"train.out_dir={tmp_path / 'runs'}"])

    kwargs = {"enable_progress_bar": False, "enable_model_summary": False, "logger": False}
    straight, _ = train(config("straight"), **kwargs)
    first, _ = train(config("split", epochs=1), **kwargs)
    resumed, trainer = train(config("split"), resume="last", **kwargs)
    assert trainer.current_epoch == 2
    a, b = straight.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys() and any(k.startswith("loss.flow.") for k in a)
    for key in a:
        assert torch.allclose(a[key].float(), b[key].float(), atol=1e-6), key
    assert not torch.allclose(first.state_dict()["model.head.keypoints.weight"], a["model.head.keypoints.weight"])
