"""Video in, poses per frame and a drawn video out: a clip rendered from the embedded dataset,
and the real 5-frame PoseTrack18 mp4 among the fixtures."""
import json

import cv2
import numpy as np
import pytest

from rlepose.inference.predictor import PosePredictor
from rlepose.cli import main
from rlepose.data.synthetic import SyntheticConfig, write_dataset
from rlepose.inference.media import is_video_source, predict_video

from test_deploy import _checkpoint


def _clip(tmp_path, frames=6):
    """A short mp4 of rendered figures (one dataset image per frame) and its boxes per frame."""
    data = tmp_path / "data"
    ann = json.loads(write_dataset(data, SyntheticConfig(num_images=frames, seed=3), "val").read_text())
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (256, 256))
    for img in ann["images"]:
        writer.write(cv2.imread(str(data / "val" / img["file_name"])))
    writer.release()
    boxes = [[a["bbox"] for a in ann["annotations"] if a["image_id"] == img["id"]] for img in ann["images"]]
    return path, boxes


def test_video_cli_writes_poses_per_frame_and_a_drawn_video(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    clip, _ = _clip(tmp_path)
    assert is_video_source(clip) and is_video_source("0") and not is_video_source("photo.jpg")
    out, drawn = tmp_path / "poses.json", tmp_path / "drawn.mp4"
    assert main(["predict", str(clip), "--checkpoint", str(ckpt), "--whole-image", "--backend", "torch",
                 "--out", str(out), "--render", str(drawn)]) == 0
    results = json.loads(out.read_text())
    assert [r["frame"] for r in results] == list(range(6))  # one whole-frame person per frame
    assert results[3]["time_s"] == pytest.approx(0.3) and len(results[0]["keypoints"]) == 51
    video = cv2.VideoCapture(str(drawn))
    count, size = 0, None
    while True:
        ok, frame = video.read()
        if not ok:
            break
        count, size = count + 1, frame.shape
    assert count == 6 and size == (256, 256, 3)


def test_video_crops_are_batched_across_frames_and_match_single_images(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    clip, boxes = _clip(tmp_path)
    predictor = PosePredictor.from_checkpoint(ckpt, backend="torch", detector=None)
    batches = []
    run = predictor.backend
    predictor.backend = lambda x: batches.append(len(x)) or run(x)
    queue = iter(boxes)

    def detector(frame):  # the rendered boxes, frame by frame, as a detector would give them
        b = np.array(next(queue))
        return b, np.ones(len(b))

    summary = predict_video(predictor, clip, tmp_path / "p.json", detector=detector, frames_per_batch=4,
                            progress=False, smooth="none")
    persons = sum(len(b) for b in boxes)
    assert summary["frames"] == 6 and summary["persons"] == persons and summary["fps"] > 0
    assert batches == [2 * sum(len(b) for b in boxes[:4]), 2 * sum(len(b) for b in boxes[4:])]
    # the same frame alone gives the same poses (frames are decoded from mp4: read them back)
    results = json.loads((tmp_path / "p.json").read_text())
    capture = cv2.VideoCapture(str(clip))
    ok, frame0 = capture.read()
    alone = predictor.predict(cv2.cvtColor(frame0, cv2.COLOR_BGR2RGB), boxes[0])
    first = [r for r in results if r["frame"] == 0]
    for a, r in zip(alone, first):
        assert np.abs(np.array(r["keypoints"]).reshape(17, 3)[:, :2] - a.keypoints).max() < 1e-3
    assert all(isinstance(r["track_id"], int) for r in results) and summary["smooth"] == "none"


def test_the_real_posetrack_clip_and_clear_errors(tmp_path, fixtures):
    ckpt, _ = _checkpoint(tmp_path)
    clip = fixtures / "posetrack18/videos/000001_mpiinew_test/000001_mpiinew_test.mp4"
    predictor = PosePredictor.from_checkpoint(ckpt, backend="torch", detector=None)
    summary = predict_video(predictor, clip, tmp_path / "pt.json", progress=False)
    assert summary["frames"] == 5 and summary["persons"] == 5
    with pytest.raises(FileNotFoundError):
        predict_video(predictor, tmp_path / "missing.mp4", tmp_path / "x.json", progress=False)
    from rlepose.data.datasets import DataError

    with pytest.raises(DataError, match="cannot open camera 9"):  # no camera here: a clear error
        predict_video(predictor, "9", tmp_path / "x.json", progress=False)
    (tmp_path / "fake.mp4").write_text("not a video")
    assert main(["predict", str(tmp_path / "fake.mp4"), "--checkpoint", str(ckpt), "--whole-image",
                 "--out", str(tmp_path / "y.json")]) == 2
    assert main(["predict", str(clip), "--checkpoint", str(ckpt), "--boxes", str(tmp_path / "y.json")]) == 2


def test_predictor_call_detects_people(tmp_path):
    ckpt, _ = _checkpoint(tmp_path)
    image = np.zeros((120, 160, 3), np.uint8)
    predictor = PosePredictor.from_checkpoint(ckpt, backend="torch",
                                              detector=lambda im: (np.array([[10.0, 10, 40, 80], [90, 20, 50, 90]]),
                                                                   np.array([0.9, 0.6])))
    people = predictor(image)
    assert [p.bbox for p in people] == [[10, 10, 40, 80], [90, 20, 50, 90]]
    assert [p.box_score for p in people] == [0.9, 0.6]
    none = PosePredictor.from_checkpoint(ckpt, backend="torch", detector=lambda im: (np.zeros((0, 4)), np.zeros(0)))
    assert none(image) == []
    from rlepose.inference.detectors import NoDetectorError

    with pytest.raises(NoDetectorError, match="give boxes"):
        PosePredictor.from_checkpoint(ckpt, backend="torch", detector=None)(image)


def test_drawn_labels_never_overlap():
    """Many people in one spot: one label is drawn (the best score), not a pile."""
    from rlepose.data.keypoints import COCO_KEYPOINTS
    from rlepose.inference.predictor import PoseResult
    from rlepose.visualize import draw_poses

    image = np.zeros((200, 200, 3), np.uint8)
    kp = np.tile([[50.0, 50.0]], (17, 1)) + np.arange(17)[:, None]
    people = [PoseResult([0, 0, 100, 100], kp + i, np.ones(17), score=s) for i, s in enumerate((0.2, 0.9, 0.5))]
    drawn = draw_poses(image, people, COCO_KEYPOINTS)
    unlabelled = draw_poses(image, people, COCO_KEYPOINTS, label=False)
    changed = np.argwhere((drawn != unlabelled).any(-1))
    assert len(changed) and changed[:, 1].max() - changed[:, 1].min() < 30  # one label's width
    apart = [PoseResult([0, 0, 100, 100], kp + 80 * i, np.ones(17), score=0.5) for i in range(2)]
    d = (draw_poses(image, apart, COCO_KEYPOINTS) != draw_poses(image, apart, COCO_KEYPOINTS, label=False)).any(-1)
    assert d[:, :100].any() and d[:, 100:].any()  # people apart: both labelled


def test_rendered_sequence_is_tracked_and_smoothed_by_sigma(tmp_path):
    """A rendered sequence (true joints in every frame) through predict_video with its true boxes
    as the detector: each person keeps one track id, the offline smoother's poses jitter less than
    the frames' own (acceleration error against the truth) and are no farther from the truth, the
    drawn video has every frame, and the JSON says each person's smoothed σ̂."""
    from rlepose.data.sequences import SequenceConfig, write_sequence
    from rlepose.hub import SHIPPED_PATH

    video, ann_path = write_sequence(tmp_path, SequenceConfig(frames=24, max_people=2, seed=4))
    ann = json.loads(ann_path.read_text())
    by_frame = {}
    for a in ann["annotations"]:
        by_frame.setdefault(a["image_id"] - 1, []).append(a)
    frames = iter(range(24))

    def detector(frame):
        people = by_frame.get(next(frames), [])
        return np.array([a["bbox"] for a in people]).reshape(-1, 4), np.ones(len(people))

    predictor = PosePredictor.from_checkpoint(SHIPPED_PATH, precision="fp32", detector=None)
    runs = {}
    for smooth in ("none", "offline"):
        frames = iter(range(24))
        summary = predict_video(predictor, video, tmp_path / f"{smooth}.json", detector=detector, smooth=smooth,
                                progress=False, render=tmp_path / "drawn.mp4" if smooth == "offline" else None)
        runs[smooth] = json.loads((tmp_path / f"{smooth}.json").read_text())
        assert summary["smooth"] == smooth and summary["frames"] == 24
    ids = {}
    errors, accels = {}, {}
    for smooth, results in runs.items():
        per_frame = {}
        for r in results:
            per_frame.setdefault(r["frame"], []).append(r)
        track_of = {}
        for f, people in by_frame.items():
            for a in people:  # results are ranked by expected OKS: matched to the truth by their box
                r = min(per_frame[f], key=lambda r: np.abs(np.array(r["bbox"]) - a["bbox"]).sum())
                track_of.setdefault(a["track_id"], set()).add(r["track_id"])
                errors.setdefault(smooth, {})[(f, a["track_id"])] = np.reshape(r["keypoints"], (-1, 3))[:, :2]
        ids[smooth] = track_of
    assert all(len(t) == 1 for t in ids["offline"].values())  # one track per person, no switches
    truth_by = {(f, a["track_id"]): np.reshape(a["keypoints"], (-1, 3)) for f, people in by_frame.items() for a in people}
    for smooth in runs:
        e, acc = [], []
        for (f, pid), kp in errors[smooth].items():
            t = truth_by[(f, pid)]
            e.append(np.linalg.norm(kp - t[:, :2], axis=-1)[t[:, 2] > 0])
            if (f - 1, pid) in errors[smooth] and (f + 1, pid) in errors[smooth]:
                est = errors[smooth][(f + 1, pid)] - 2 * kp + errors[smooth][(f - 1, pid)]
                true = truth_by[(f + 1, pid)][:, :2] - 2 * t[:, :2] + truth_by[(f - 1, pid)][:, :2]
                both = (t[:, 2] > 0) & (truth_by[(f + 1, pid)][:, 2] > 0) & (truth_by[(f - 1, pid)][:, 2] > 0)
                acc.append(np.linalg.norm(est - true, axis=-1)[both])
        errors[smooth], accels[smooth] = np.concatenate(e).mean(), np.concatenate(acc).mean()
    assert accels["offline"] < 0.5 * accels["none"] and errors["offline"] < errors["none"] + 0.5
    assert all(len(r["sigma"]) == 17 and "expected_oks" in r for r in runs["offline"])
    capture, count = cv2.VideoCapture(str(tmp_path / "drawn.mp4")), 0
    while capture.read()[0]:
        count += 1
    assert count == 24
