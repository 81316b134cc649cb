"""A corpus of bad inputs, made here from the real fixture photo: every one gives a clear error or
the right result in predict, train, eval and convert (the README's table lists them)."""
import json
import struct
import zlib

import cv2
import numpy as np
import pytest
import torch

from rlepose.cli import main
from rlepose.data.datasets import DataError, read_image

from test_deploy import _checkpoint


def _png_header_only(width, height):
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 100)) + chunk(b"IEND", b""))


@pytest.fixture
def corpus(tmp_path, fixtures):
    """{name: (path, expectation)}: "ok (H, W)" decodes to that RGB shape, otherwise the error text."""
    pil = pytest.importorskip("PIL.Image")
    src = cv2.imread(str(fixtures / "coco/000000000785.jpg"))  # 425 × 640, one person
    d = tmp_path / "bad"
    d.mkdir()
    cv2.imwrite(str(d / "photo.jpg"), src)
    data = (d / "photo.jpg").read_bytes()
    (d / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (d / "empty.jpg").write_bytes(b"")
    (d / "text_named.jpg").write_text("this is not an image")
    cv2.imwrite(str(d / "grayscale.png"), cv2.cvtColor(src, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "sixteen_bit.png"), src.astype(np.uint16) * 257)
    cv2.imwrite(str(d / "alpha.png"), np.concatenate([src, np.full(src.shape[:2] + (1,), 128, np.uint8)], 2))
    pil.fromarray(src[..., ::-1]).convert("CMYK").save(d / "cmyk.jpg")
    rotated = pil.fromarray(src[..., ::-1])
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated.save(d / "exif_rotated.jpg", exif=exif)
    cv2.imwrite(str(d / "one_pixel.png"), src[:1, :1])
    (d / "huge_header.png").write_bytes(_png_header_only(20000, 20000))
    return d, {"photo.jpg": "ok (425, 640)", "truncated.jpg": "cannot decode", "empty.jpg": "cannot decode",
               "text_named.jpg": "cannot decode", "grayscale.png": "ok (425, 640)", "sixteen_bit.png": "ok (425, 640)",
               "alpha.png": "ok (425, 640)", "cmyk.jpg": "ok (425, 640)", "exif_rotated.jpg": "ok (640, 425)",
               "one_pixel.png": "ok (1, 1)", "huge_header.png": "20000×20000 pixels"}


def test_every_image_decodes_right_or_fails_clearly(corpus):
    d, expected = corpus
    reference = read_image(d / "photo.jpg").astype(float)
    for name, expect in expected.items():
        if expect.startswith("ok"):
            image = read_image(d / name)
            assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
            assert str(image.shape[:2]) == expect[3:], name
            if image.shape[:2] == (425, 640):  # same picture: only JPEG re-encoding differs
                assert np.abs(image.astype(float) - reference).mean() < 5, name
        else:
            with pytest.raises(DataError, match=expect):
                read_image(d / name)
    upright = read_image(d / "exif_rotated.jpg")  # EXIF orientation is applied
    assert np.abs(np.rot90(upright, 1).astype(float) - reference).mean() < 5


def test_predict_on_the_corpus(corpus, tmp_path, capsys):
    d, expected = corpus
    ckpt, _ = _checkpoint(tmp_path)
    out = tmp_path / "pred.json"
    assert main(["predict", str(d), "--checkpoint", str(ckpt), "--whole-image", "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    done = {r["file_name"] for r in results}
    assert done == {n for n, e in expected.items() if e.startswith("ok")}
    err = capsys.readouterr().err
    for name, expect in expected.items():
        if not expect.startswith("ok"):
            assert "skipped" in err and name in err and expect in err
    assert next(r for r in results if r["file_name"] == "exif_rotated.jpg")["bbox"] == [0, 0, 425, 640]
    # box files: empty, wrong types, pointing at images that are not there
    boxes = tmp_path / "boxes.json"
    boxes.write_text("")
    assert main(["predict", str(d / "photo.jpg"), "--checkpoint", str(ckpt), "--boxes", str(boxes)]) == 2
    assert "not valid JSON" in capsys.readouterr().err
    boxes.write_text(json.dumps({"image_id": 1, "bbox": [0, 0, 1, 1]}))
    assert main(["predict", str(d / "photo.jpg"), "--checkpoint", str(ckpt), "--boxes", str(boxes)]) == 2
    boxes.write_text(json.dumps([{"image_id": "photo.jpg", "bbox": "0 0 10 10"}]))
    assert main(["predict", str(d / "photo.jpg"), "--checkpoint", str(ckpt), "--boxes", str(boxes)]) == 2
    assert "bbox must be" in capsys.readouterr().err
    boxes.write_text(json.dumps([{"image_id": "elsewhere.jpg", "bbox": [0, 0, 10, 10], "score": 1}]))
    assert main(["predict", str(d / "photo.jpg"), "--checkpoint", str(ckpt), "--boxes", str(boxes),
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text()) == []  # no box for this photo: no person, and a warning


def test_train_and_eval_on_broken_annotation_files(tmp_path, fixtures, capsys):
    import yaml

    gt = json.loads((fixtures / "coco/test_coco.json").read_text())
    ann = dict(gt["annotations"][0])
    cases = {"empty.json": ("", "not valid JSON"),
             "list.json": ("[]", "not a COCO keypoints file"),
             "wrong_types.json": (json.dumps({**gt, "annotations": "oops"}), "must be a list of objects"),
             "keypoints_text.json": (json.dumps({**gt, "annotations": [{**ann, "keypoints": "abc"}]}),
                                     "expected a list of 51 keypoint values"),
             "missing_images.json": (json.dumps({**gt, "images": [{**gt["images"][0], "file_name": "gone.jpg"}],
                                                 "annotations": [a for a in gt["annotations"]
                                                                 if a["image_id"] == gt["images"][0]["id"]]}),
                                     "image not found")}
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        cfg = {"name": "bad", "model": {"backbone": "resnet18"}, "transform": {"input_size": [64, 48]},
               "data": {"root": str(fixtures / "coco"), "train_ann": str(tmp_path / name), "train_images": ".",
                        "val_ann": str(tmp_path / name), "val_images": ".", "num_workers": 0, "batch_size": 2},
               "train": {"epochs": 1, "out_dir": str(tmp_path / "runs")}}
        (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
        assert main(["train", str(tmp_path / "cfg.yaml")]) == 2, name
        assert message in capsys.readouterr().err, name
    ckpt, _ = _checkpoint(tmp_path)
    assert main(["eval", str(tmp_path / "cfg.yaml"), "--checkpoint", str(ckpt)]) == 2
    assert "image not found" in capsys.readouterr().err


def test_convert_and_eval_refuse_broken_checkpoints(tmp_path, capsys):
    torch.save({"state_dict": {"a": torch.zeros(3)}}, tmp_path / "good.pth")
    data = (tmp_path / "good.pth").read_bytes()
    files = {"empty.pth": b"", "text.pth": b"hello", "truncated.pth": data[: len(data) // 2]}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
        assert main(["convert", str(tmp_path / name), str(tmp_path / "out.ckpt"), "--from", "mmpose"]) == 2
        err = capsys.readouterr().err
        assert "cannot read checkpoint" in err and ("empty" in err or "cut short" in err), name
        assert not (tmp_path / "out.ckpt").exists()
    assert main(["convert", str(tmp_path / "good.pth"), str(tmp_path / "out.ckpt"), "--from", "mmpose"]) == 2
    assert "no MMPose regression head" in capsys.readouterr().err


def test_predict_checks_every_input_before_loading_anything(tmp_path, fixtures, capsys):
    """A missing file, an empty folder or a folder without images: exit 2 with one message each,
    before the checkpoint is even looked at (it does not exist here)."""
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/readme.txt").write_text("no images here")
    missing_ckpt = str(tmp_path / "nowhere.ckpt")
    for inputs, message in (([str(tmp_path / "gone.jpg")], "not found: "), ([str(empty)], "no images"),
                            ([str(tmp_path / "notes")], "no images")):
        assert main(["predict", *inputs, "--checkpoint", missing_ckpt, "--whole-image"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("error:") == 1 and "nowhere.ckpt" not in err
    photo = str(fixtures / "coco/000000000785.jpg")
    assert main(["predict", photo, "--checkpoint", missing_ckpt, "--whole-image"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_boxes_file_keeps_boxes_scoring_at_least_the_threshold(tmp_path, fixtures):
    ckpt, _ = _checkpoint(tmp_path)
    dets = json.loads((fixtures / "coco/test_coco_det_AP_H_56.json").read_text())
    photo = fixtures / "coco/000000000785.jpg"
    for extra, threshold in (([], 0.3), (["--box-threshold", "0.9"], 0.9)):
        out = tmp_path / f"p{threshold}.json"
        assert main(["predict", str(photo), "--checkpoint", str(ckpt), "--boxes",
                     str(fixtures / "coco/test_coco_det_AP_H_56.json"), "--out", str(out), *extra]) == 0
        expected = sum(1 for d in dets if d["image_id"] == 785 and d["score"] >= threshold)
        assert len(json.loads(out.read_text())) == expected


def test_the_shipped_model_by_name_and_its_note_on_photos(tmp_path, fixtures, capsys):
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "demo" in listing and "not for photos" in listing
    out = tmp_path / "demo.json"
    assert main(["predict", str(fixtures / "coco/000000000785.jpg"), "--model", "demo", "--whole-image",
                 "--backend", "torch", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.count("rendered figures only") == 1 and len(json.loads(out.read_text())) == 1


def test_people_are_ranked_and_filtered_by_their_expected_oks(tmp_path, fixtures):
    ckpt, _ = _checkpoint(tmp_path)
    photo = fixtures / "coco/000000000785.jpg"
    boxes = str(fixtures / "coco/test_coco_det_AP_H_56.json")
    out = tmp_path / "ranked.json"
    assert main(["predict", str(photo), "--checkpoint", str(ckpt), "--boxes", boxes, "--box-threshold", "0",
                 "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    believed = [r["expected_oks"] for r in results]
    assert len(results) > 1 and all(0 < b <= 1 for b in believed) and believed == sorted(believed, reverse=True)
    cut = sorted(believed)[len(believed) // 2]
    assert main(["predict", str(photo), "--checkpoint", str(ckpt), "--boxes", boxes, "--box-threshold", "0",
                 "--score-threshold", str(cut), "--out", str(out)]) == 0
    assert [r["expected_oks"] for r in json.loads(out.read_text())] == [b for b in believed if b >= cut]


def test_overrides_anywhere_and_type_checked(tmp_path, capsys):
    """key=value after an option is an override, not a usage error; a value of the wrong type is
    refused naming the field and the type it takes."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"name: t\ndata: {{root: {tmp_path}}}\n")
    assert main(["train", str(cfg), "--resume", "last", "data.batch_size=eight"]) == 2
    err = capsys.readouterr().err
    assert "data.batch_size must be int, got 'eight'" in err and "usage:" not in err
    assert main(["train", str(cfg), "loss.name=rle_official"]) == 2
    assert "choose from rle, rle_paper" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", str(cfg), "--no-such-option"])
    cfg.write_text("name: [unclosed\n")
    assert main(["train", str(cfg)]) == 2
    assert "not valid YAML" in capsys.readouterr().err
