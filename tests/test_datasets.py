"""Loaders on the real fixtures, and clear errors on bad input."""
import json
import logging
import shutil

import numpy as np
import pytest

from rlepose.data.datasets import (DataError, TopDownDataset, collate_skip_none, load_coco_instances,
                                   load_mpii_instances, mpii_head_size)
from rlepose.data.keypoints import COCO_KEYPOINTS, KeypointSpec
from rlepose.data.transforms import TopDownTransform, TransformConfig


def test_coco_fixture_instances(fixtures):
    ann = json.loads((fixtures / "coco/test_coco.json").read_text())
    expected = sum(1 for a in ann["annotations"] if a["num_keypoints"] > 0 and not a["iscrowd"])
    inst = load_coco_instances(fixtures / "coco/test_coco.json", fixtures / "coco")
    assert len(inst) == expected == 12
    first = next(a for a in ann["annotations"] if a["num_keypoints"] > 0)
    assert inst[0].keypoints[0].tolist() == first["keypoints"][:2]
    dets = json.loads((fixtures / "coco/test_coco_det_AP_H_56.json").read_text())
    det_inst = load_coco_instances(fixtures / "coco/test_coco.json", fixtures / "coco",
                                   detections=fixtures / "coco/test_coco_det_AP_H_56.json", det_score_threshold=0.5)
    assert len(det_inst) == sum(d["score"] >= 0.5 for d in dets)
    ds = TopDownDataset(inst, TopDownTransform(TransformConfig(), COCO_KEYPOINTS, train=True), seed=0)
    batch = collate_skip_none([ds[0], ds[1]])
    assert batch["image"].shape == (2, 3, 256, 192) and batch["target"].shape == (2, 17, 2)


def test_mpii_fixture_instances_and_head_size(fixtures):
    records = json.loads((fixtures / "mpii/test_mpii.json").read_text())
    inst = load_mpii_instances(fixtures / "mpii/test_mpii.json", fixtures / "mpii")
    assert len(inst) == 5
    r = records[0]
    # centre moves down by 15·scale, box 200·scale square
    assert inst[0].box[0] + inst[0].box[2] / 2 == pytest.approx(r["center"][0])
    assert inst[0].box[1] + inst[0].box[3] / 2 == pytest.approx(r["center"][1] + 15 * r["scale"])
    assert inst[0].box[2] == pytest.approx(200 * r["scale"])
    size, source = mpii_head_size({**r, "headbox": [10, 20, 40, 60]})
    assert (size, source) == (pytest.approx(0.6 * 50.0), "headbox")
    j = np.asarray(r["joints"])
    assert mpii_head_size(r)[0] == pytest.approx(0.6 * np.sqrt(2) * np.hypot(*(j[9] - j[8])))


def _coco_file(tmp_path, anns, n_kp=17, file_name="a.jpg"):
    data = {"images": [{"id": 1, "file_name": file_name, "width": 100, "height": 100}],
            "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": [f"k{i}" for i in range(n_kp)]}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def _ann(aid, bbox=(10, 10, 30, 50), n_kp=17):
    return {"id": aid, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": list(bbox), "area": 100,
            "keypoints": [20, 20, 2] * n_kp, "num_keypoints": n_kp}


def test_bad_annotations_are_named(tmp_path):
    with pytest.raises(DataError, match="annotation 7: expected a list of 51 keypoint values, got 6 values"):
        load_coco_instances(_coco_file(tmp_path, [{**_ann(7), "keypoints": [1, 2, 2, 3, 4, 2]}]), tmp_path)
    with pytest.raises(DataError, match="annotation 8: degenerate or missing bbox"):
        load_coco_instances(_coco_file(tmp_path, [_ann(8, bbox=(10, 10, 0, 50))]), tmp_path)
    with pytest.raises(DataError, match="not a COCO keypoints file"):
        (tmp_path / "x.json").write_text("{}")
        load_coco_instances(tmp_path / "x.json", tmp_path)
    with pytest.raises(DataError, match="not valid JSON"):
        (tmp_path / "y.json").write_text("{oops")
        load_coco_instances(tmp_path / "y.json", tmp_path)
    with pytest.raises(DataError, match="annotation file not found"):
        load_coco_instances(tmp_path / "missing.json", tmp_path)


def test_skip_mode_logs_and_leaves_bad_records_out(tmp_path, caplog):
    path = _coco_file(tmp_path, [_ann(1), _ann(2, bbox=(10, 10, -5, 50))])
    with caplog.at_level(logging.WARNING):
        inst = load_coco_instances(path, tmp_path, on_error="skip")
    assert len(inst) == 1 and "annotation 2" in caplog.text


def test_missing_and_corrupt_images(tmp_path, fixtures, caplog):
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    t = TopDownTransform(TransformConfig(), COCO_KEYPOINTS, train=False)
    for name, msg in (("bad.jpg", "cannot decode image .*bad.jpg.*annotation 1"),
                      ("gone.jpg", "image not found: .*gone.jpg.*annotation 1")):
        inst = load_coco_instances(_coco_file(tmp_path, [_ann(1)], file_name=name), tmp_path)
        with pytest.raises(DataError, match=msg):
            TopDownDataset(inst, t)[0]
    shutil.copy(fixtures / "coco/000000000785.jpg", tmp_path / "good.jpg")
    good = load_coco_instances(_coco_file(tmp_path, [_ann(1)], file_name="good.jpg"), tmp_path)
    bad = load_coco_instances(_coco_file(tmp_path, [_ann(2)], file_name="bad.jpg"), tmp_path)
    ds = TopDownDataset(good + bad, t, on_error="skip")
    with caplog.at_level(logging.WARNING):
        batch = collate_skip_none([ds[0], ds[1]])
    assert batch["image"].shape[0] == 1 and "bad.jpg" in caplog.text


def test_custom_keypoint_set_from_config(tmp_path):
    spec = KeypointSpec.from_dict({"name": "paw", "joints": ["a", "b", "c", "d"], "flip_pairs": [[0, 1]],
                                   "sigmas": [0.05] * 4, "skeleton": [[0, 2], [1, 3]]})
    inst = load_coco_instances(_coco_file(tmp_path, [_ann(1, n_kp=4)], n_kp=4), tmp_path, spec)
    assert inst[0].keypoints.shape == (4, 2) and spec.flip_permutation() == [1, 0, 2, 3]
    with pytest.raises(ValueError, match="out of range"):
        KeypointSpec.from_dict({"joints": ["a", "b"], "flip_pairs": [[0, 5]]})
    with pytest.raises(ValueError, match="3 OKS sigmas for 2 joints"):
        KeypointSpec.from_dict({"joints": ["a", "b"], "sigmas": [0.1, 0.1, 0.1]})
    with pytest.raises(ValueError, match="unknown keypoint spec fields"):
        KeypointSpec.from_dict({"joints": ["a"], "flips": []})


def test_nonfinite_keypoints_and_bad_visibility_are_named(tmp_path, caplog):
    nan = {**_ann(3), "keypoints": [float("nan"), 20, 2] + [20, 20, 2] * 16}
    with pytest.raises(DataError, match="annotation 3: keypoints hold NaN or inf"):
        load_coco_instances(_coco_file(tmp_path, [nan]), tmp_path)
    with pytest.raises(DataError, match="annotation 4: visibility flags must be 0, 1 or 2, got \\[2.0, 3.0\\]"):
        load_coco_instances(_coco_file(tmp_path, [{**_ann(4), "keypoints": [20, 20, 3] + [20, 20, 2] * 16}]), tmp_path)
    with pytest.raises(DataError, match="annotation 5: keypoints must be numbers"):
        load_coco_instances(_coco_file(tmp_path, [{**_ann(5), "keypoints": ["a", 20, 2] + [20, 20, 2] * 16}]), tmp_path)
    with caplog.at_level(logging.WARNING):
        kept = load_coco_instances(_coco_file(tmp_path, [_ann(1), nan]), tmp_path, on_error="skip")
    assert len(kept) == 1 and "annotation 3" in caplog.text
    mpii = tmp_path / "mpii.json"
    record = {"image": "a.jpg", "center": [50, 50], "scale": 1.0, "joints": [[10, 10]] * 16, "joints_vis": [1] * 16}
    mpii.write_text(json.dumps([record, {**record, "joints": [[float("inf"), 10]] + [[10, 10]] * 15},
                                {**record, "joints_vis": [2] + [1] * 15}]))
    with pytest.raises(DataError, match=r"mpii.json\[1\]: joints or center hold NaN or inf"):
        load_mpii_instances(mpii, tmp_path)
    assert len(load_mpii_instances(mpii, tmp_path, on_error="skip")) == 1


def test_rendered_label_noise_matches_its_stated_spread(tmp_path):
    """The embedded data's labels: with ``label_noise="coco"`` each joint's spread around the true
    position is COCO's measured annotator spread (pycocotools' OKS σ_k, times √(area), over √2
    per coordinate), Gaussian; with ``"coco_mixture"`` the same r.m.s. spread from the heavy-tailed
    two-component law; by default 1 px (visible) and 5 px (occluded) per 100 px of figure."""
    from pycocotools.cocoeval import COCOeval

    from rlepose.data.synthetic import SyntheticConfig, write_dataset

    with pytest.raises(ValueError, match="label_noise"):
        SyntheticConfig(label_noise="gaussian")
    coco_sigmas = COCOeval(iouType="keypoints").params.kpt_oks_sigmas
    for mode in ("coco", "coco_mixture", "fixed"):
        ann = json.loads(write_dataset(tmp_path / mode, SyntheticConfig(num_images=200, seed=1, label_noise=mode), "val").read_text())
        z = {k: [] for k in ("coco", 1, 2)}
        for a in ann["annotations"]:
            kps, true = np.reshape(a["keypoints"], (17, 3)), np.reshape(a["true_keypoints"], (17, 2))
            extent = (true.max(0) - true.min(0)).max() / 100
            for k in range(17):
                if kps[k, 2] == 0 or np.any(kps[k, :2] <= 0) or np.any(kps[k, :2] >= 255):  # clipped at the border
                    continue
                d = kps[k, :2] - true[k]
                if mode.startswith("coco"):
                    z["coco"].append((k, *(d / np.sqrt(a["area"]))))
                else:
                    z[int(kps[k, 2])].extend(d / extent)
        if mode.startswith("coco"):
            arr = np.array(z["coco"])
            per_joint = np.array([np.sqrt(np.mean(arr[arr[:, 0] == k, 1:] ** 2) * 2) for k in range(17)])
            # one coordinate's deviation over its stated spread σ_k/√2: unit r.m.s. in both laws;
            # kurtosis 3 for the Gaussian, 3·Σw·s⁴/(Σw·s²)² = 13.3 for the mixture (0.8, 0.5; 0.2, 4)
            u = arr[:, 1:] / (coco_sigmas[arr[:, 0].astype(int)] / np.sqrt(2))[:, None]
            kurtosis = np.mean(u ** 4) / np.mean(u ** 2) ** 2
            assert np.sqrt(np.mean(u ** 2)) == pytest.approx(1.0, rel=0.06)
            if mode == "coco":
                assert per_joint == pytest.approx(coco_sigmas, rel=0.15)
                assert np.corrcoef(per_joint, coco_sigmas)[0, 1] > 0.97
                assert kurtosis == pytest.approx(3.0, abs=0.4)
            else:  # heavy tails make each joint's r.m.s. noisier; the pooled one is held above
                assert per_joint == pytest.approx(coco_sigmas, rel=0.3)
                assert kurtosis == pytest.approx(13.3, rel=0.25)
                # the same per joint for both coordinates: |dx| and |dy| correlate, a Gaussian's do not
                assert np.corrcoef(np.abs(u[:, 0]), np.abs(u[:, 1]))[0, 1] > 0.3
        else:  # labels are rounded to 0.01 px, far below these spreads
            assert np.std(z[2]) == pytest.approx(1.0, rel=0.1) and np.std(z[1]) == pytest.approx(5.0, rel=0.15)


def test_truth_annotations_score_the_true_positions(tmp_path):
    """``write_truth_annotations``: the true joint positions, scored as predictions, reach AP 1
    against the truth file and less against the noisy labels; visibility and everything else kept."""
    from rlepose.data.synthetic import SyntheticConfig, write_dataset, write_truth_annotations
    from rlepose.evaluation.coco import coco_keypoint_ap

    labels = write_dataset(tmp_path, SyntheticConfig(num_images=30, seed=2, label_noise="coco_mixture"), "val")
    truth = write_truth_annotations(labels)
    assert truth == tmp_path / "val_true.json"
    noisy, exact = json.loads(labels.read_text()), json.loads(truth.read_text())
    results = []
    for a, t in zip(noisy["annotations"], exact["annotations"]):
        kps, true = np.reshape(t["keypoints"], (17, 3)), np.reshape(a["true_keypoints"], (17, 2))
        assert np.array_equal(kps[:, 2], np.reshape(a["keypoints"], (17, 3))[:, 2])
        labelled = kps[:, 2] > 0
        assert np.allclose(kps[labelled, :2], true[labelled]) and not kps[~labelled, :2].any()
        assert {k: v for k, v in t.items() if k != "keypoints"} == {k: v for k, v in a.items() if k != "keypoints"}
        pred = np.concatenate([true, np.ones((17, 1))], 1)
        results.append({"image_id": a["image_id"], "category_id": 1, "keypoints": pred.ravel().tolist(), "score": 1.0})
    assert coco_keypoint_ap(truth, results)["AP"] == pytest.approx(1.0)
    assert coco_keypoint_ap(labels, results)["AP"] < 0.95
