"""Images, folders, videos or a camera in; COCO-format results (and drawn images or a drawn
video) out: what ``rlepose predict`` runs."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from rlepose.data.io import DataError, read_image
from rlepose.files import write_json

__all__ = ["IMAGE_SUFFIXES", "VIDEO_SUFFIXES", "is_video_source", "collect_images", "load_boxes",
           "rank", "predict_files", "predict_video"]

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


def is_video_source(source: str | Path) -> bool:
    """A video file (by suffix) or a camera index (``0``, ``1``, …)."""
    return str(source).isdigit() or Path(source).suffix.lower() in VIDEO_SUFFIXES


def collect_images(paths: list[str | Path]) -> list[Path]:
    """Files as given, folders expanded to their images (sorted). Every problem is reported in
    one error: a path that does not exist (FileNotFoundError), a folder without images, or no
    images at all (ValueError)."""
    out, missing, empty = [], [], []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            out += found
            if not found:
                empty.append(str(p))
        elif p.exists():
            out.append(p)
        else:
            missing.append(str(p))
    if missing:
        raise FileNotFoundError(f"not found: {', '.join(missing)}")
    if empty:
        raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {', '.join(empty)}")
    if not out:
        raise ValueError("no images given")
    return out


def load_boxes(path: str | Path, images: list[Path], threshold: float = 0.0) -> dict[Path, tuple[np.ndarray, np.ndarray]]:
    """A COCO detection-results JSON → {image: (boxes (M, 4), scores (M,))}. ``image_id`` is
    matched to a file by its numeric stem (COCO's 000000000785.jpg ↔ 785) or its name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"box file not found: {path}")
    try:
        dets = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"box file {path} is not valid JSON: {e}") from e
    if not isinstance(dets, list):
        raise DataError(f"box file {path}: expected a list of {{image_id, bbox, score}}")
    by_key: dict = {}
    for img in images:
        by_key[img.name] = img
        by_key[img.stem] = img
        if img.stem.isdigit():
            by_key[int(img.stem)] = img
    found: dict[Path, list] = {}
    unmatched = set()
    for i, d in enumerate(dets):
        if not isinstance(d, dict) or "image_id" not in d or "bbox" not in d:
            raise DataError(f"box file {path}, entry {i}: needs image_id and bbox")
        if not isinstance(d["bbox"], list) or len(d["bbox"]) != 4 or not all(isinstance(v, (int, float)) for v in d["bbox"]):
            raise DataError(f"box file {path}, entry {i}: bbox must be [x, y, w, h] numbers, got {str(d['bbox'])[:60]}")
        if not isinstance(d.get("score", 1.0), (int, float)):
            raise DataError(f"box file {path}, entry {i}: score must be a number, got {str(d['score'])[:60]}")
        if d.get("score", 1.0) < threshold or d.get("category_id", 1) != 1:
            continue
        img = by_key.get(d["image_id"])
        if img is not None:
            found.setdefault(img, []).append((d["bbox"], d.get("score", 1.0)))
        else:
            unmatched.add(d["image_id"])
    if unmatched:
        log.warning("%s: %d image ids match none of the given images (e.g. %s); their boxes are not used",
                    path, len(unmatched), sorted(map(str, unmatched))[:3])
    return {img: (np.array([b for b, _ in v], float), np.array([s for _, s in v], float)) for img, v in found.items()}


def _progress(items, unit: str, enabled: bool = True):
    """``items`` with a progress bar on stderr (when tqdm is installed and ``enabled``)."""
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        return items
    return tqdm(items, unit=unit[:-1] if unit.endswith("s") else unit, file=sys.stderr, leave=False)


def rank(people: list, min_score: float = 0.0) -> list:
    """People best first, by the OKS the model expects (its ``score`` for heatmap models), those
    below ``min_score`` left out."""
    def key(p):
        return p.expected_oks if p.expected_oks is not None else p.score

    return sorted((p for p in people if key(p) >= min_score), key=lambda p: -key(p))


def predict_files(predictor, inputs: list[str | Path], out_file: str | Path,
                  boxes: dict[Path, tuple[np.ndarray, np.ndarray]] | None = None, detector=None,
                  render_dir: str | Path | None = None, min_score: float = 0.0, progress: bool = True) -> dict:
    """Poses on every image of ``inputs`` (files, folders) with ``predictor``
    (:class:`rlepose.inference.PosePredictor`); COCO keypoint results are rewritten to
    ``out_file`` after each image, so a failure later never loses what was computed; unreadable
    images are reported and skipped. Person boxes: ``boxes`` (:func:`load_boxes`), else
    ``detector`` (image → boxes, scores), else the whole image. ``render_dir``: drawn images.
    People are ranked and filtered by :func:`rank` with ``min_score``."""
    from rlepose.visualize import draw_poses

    images = inputs if all(isinstance(p, Path) and p.is_file() for p in inputs) else collect_images(inputs)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    results, failed, done = [], [], 0
    for img_path in _progress(images, "images", progress):
        try:
            image = read_image(img_path)
        except DataError as e:  # reported by the caller (the CLI prints each once)
            failed.append(str(e))
            continue
        image_id = int(img_path.stem) if img_path.stem.isdigit() else img_path.name
        if boxes is not None and img_path not in boxes:
            people = []
        else:
            b, s = boxes[img_path] if boxes is not None else detector(image) if detector is not None else (None, None)
            people = rank(predictor.predict(image, b, s), min_score) if b is None or len(b) else []
        results += [{**p.to_coco(image_id), "file_name": img_path.name} for p in people]
        if render_dir:
            Path(render_dir).mkdir(parents=True, exist_ok=True)
            drawn = draw_poses(image, people, predictor.spec)
            cv2.imwrite(str(Path(render_dir) / (img_path.stem + ".jpg")), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        done += 1
        write_json(out_file, results)  # atomic: the file always holds every finished image
    if not done:
        write_json(out_file, results)
    return {"images": done, "persons": len(results), "failed": failed}


def _open_video(source: str | Path):
    camera = str(source).isdigit()
    if not camera and not Path(source).is_file():
        raise FileNotFoundError(f"video not found: {source}")
    capture = cv2.VideoCapture(int(source) if camera else str(source))
    if not capture.isOpened():
        raise DataError(f"cannot open {'camera' if camera else 'video'} {source}: "
                        + ("no such camera" if camera else "not a video OpenCV can decode"))
    return capture, camera


class _VideoWriter:
    """Frames (RGB) to an mp4 at ``fps``, opened at the first frame (its size)."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps, self.writer = Path(path), fps, None

    def write(self, frame: np.ndarray) -> None:
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            h, w = frame.shape[:2]
            self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            if not self.writer.isOpened():
                raise DataError(f"cannot write video {self.path} (mp4v codec)")
        self.writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def predict_video(predictor, source: str | Path, out_file: str | Path, render: str | Path | None = None,
                  detector=None, frames_per_batch: int = 8, max_frames: int | None = None,
                  progress: bool = True, min_score: float = 0.0, smooth: str = "auto",
                  acceleration: float | None = None) -> dict:
    """Poses in every frame of a video file or camera (``source`` ``"0"``: camera 0), each
    person tracked across frames and smoothed by its own σ̂ (:mod:`rlepose.inference.temporal`).

    Frames are read with OpenCV; people come from ``detector`` (image → boxes, scores), or the
    whole frame without one; the crops of ``frames_per_batch`` frames go through the model
    together. ``smooth``: ``auto`` (offline for files, online for cameras), ``online`` (a Kalman
    filter, frame by frame), ``offline`` (the RTS smoother over each whole track, after the last
    frame), ``none`` (tracks only); ``acceleration``: the motion model's (default: the mode's
    :data:`rlepose.inference.temporal.DEFAULT_ACCELERATION`). Results (COCO keypoint format plus
    ``frame``, 0-based, ``time_s`` and ``track_id``) are rewritten to ``out_file`` after every
    batch, so an interrupted run keeps what it did (offline: the raw poses until the smoothed ones
    replace them at the end); ``render`` writes the video with the skeletons drawn in their
    track's colour at the source's frame rate (offline: in a second pass over the file). Returns
    frames, persons, tracks, the smoothing, the measured frames per second, and paths."""
    import time

    from rlepose.inference.temporal import SMOOTHING, TemporalPoses
    from rlepose.visualize import draw_poses

    if smooth not in SMOOTHING:
        raise ValueError(f"smooth must be one of {', '.join(SMOOTHING)}, got {smooth!r}")
    capture, camera = _open_video(source)
    smooth = ("online" if camera else "offline") if smooth == "auto" else smooth
    temporal = TemporalPoses(predictor.spec, smooth, acceleration)
    fps = capture.get(cv2.CAP_PROP_FPS) or 0.0
    fps = fps if 0 < fps < 1000 else 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if not camera else 0
    total = min(total, max_frames) if max_frames and total > 0 else (max_frames or total or None)
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    writer = _VideoWriter(render, fps) if render else None
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc=Path(str(source)).name)
        except ImportError:
            pass

    def record(index: int, person) -> dict:
        return {"frame": index, "time_s": round(index / fps, 4), **person.to_coco(index)}

    results: list[dict] = []
    done, start = 0, time.perf_counter()
    try:
        while True:
            frames = []
            while len(frames) < frames_per_batch and (max_frames is None or done + len(frames) < max_frames):
                ok, frame = capture.read()
                if not ok:
                    break
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if not frames:
                break
            detections = [detector(f) if detector is not None else (None, None) for f in frames]
            people = [rank(p, min_score) for p in
                      predictor.predict_many(frames, [d[0] for d in detections], [d[1] for d in detections])]
            for offset, (frame, persons) in enumerate(zip(frames, people)):
                persons = temporal.add(done + offset, persons)
                results += [record(done + offset, p) for p in persons]
                if writer is not None and smooth != "offline":
                    writer.write(draw_poses(frame, persons, predictor.spec))
            done += len(frames)
            write_json(out_file, results)
            if bar is not None:
                bar.update(len(frames))
                bar.set_postfix(fps=f"{done / (time.perf_counter() - start):.1f}")
    finally:
        capture.release()
        if bar is not None:
            bar.close()
        if writer is not None and smooth != "offline":
            writer.close()
    seconds = time.perf_counter() - start
    if smooth == "offline":
        smoothed = temporal.finish()
        results = [record(index, p) for index in sorted(smoothed) for p in smoothed[index]]
        if writer is not None:
            _draw_video(source, smoothed, predictor.spec, writer, done)
    write_json(out_file, results)
    tracks = {r["track_id"] for r in results if "track_id" in r}
    return {"frames": done, "persons": len(results), "tracks": len(tracks), "smooth": smooth,
            "fps": done / seconds if seconds > 0 else 0.0, "out": str(out_file),
            "render": str(render) if render else None}


def _draw_video(source, people: dict[int, list], spec, writer: _VideoWriter, frames: int) -> None:
    """Second pass over a video file: each of its first ``frames`` frames drawn with ``people[frame]``."""
    from rlepose.visualize import draw_poses

    capture, _ = _open_video(source)
    try:
        for index in range(frames):
            ok, frame = capture.read()
            if not ok:
                break
            writer.write(draw_poses(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), people.get(index, []), spec))
    finally:
        capture.release()
        writer.close()
