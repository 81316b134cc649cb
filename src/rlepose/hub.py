"""Pretrained RLE models by name: MMPose's published checkpoints, downloaded once, checked,
converted with :mod:`rlepose.convert` and cached.

Cache: ``$RLEPOSE_HOME`` (default ``~/.cache/rlepose``), with the files as published under
``downloads/`` and our converted checkpoints under ``checkpoints/NAME.ckpt``. A download goes to
a ``.part`` file that is renamed only after its sha256 matches the prefix MMPose puts in every
file name (``…-d37efd64_20220913.pth``), so the cache never holds a partial or wrong file.
Offline or failed: :class:`DownloadError` with the URL and the path to put the file by hand.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SHIPPED_NAME", "SHIPPED_PATH", "SHIPPED_ONE_STAGE_NAME", "SHIPPED_ONE_STAGE_PATH", "PretrainedModel", "MODELS", "DownloadError", "home", "checkpoint_path", "download_path",
           "is_cached", "download", "pretrained_checkpoint", "PretrainedDetector", "DETECTORS",
           "detector_path", "detector_onnx"]

_MMPOSE = "https://download.openmmlab.com/mmpose/"
_LICENCE = "Apache-2.0 (MMPose model zoo)"


@dataclass(frozen=True)
class PretrainedModel:
    """One published checkpoint. ``input_size`` (H, W) pixels; ``metric``/``value`` as the
    publisher reports them on the validation set (COCO val2017 AP with a 56.4 AP person
    detector; MPII val PCKh@0.5)."""

    name: str
    url: str
    backbone: str
    dataset: str
    input_size: tuple[int, int]
    metric: str
    value: float
    source: str = "MMPose"
    licence: str = _LICENCE

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def sha256_prefix(self) -> str:
        """The hash prefix in the file name (MMPose's convention), lower-case hex."""
        match = re.search(r"-([0-9a-f]{8,64})(?:_\d{8})?\.pth$", self.filename)
        if not match:
            raise ValueError(f"{self.filename}: no sha256 prefix in the file name")
        return match.group(1)


MODELS: dict[str, PretrainedModel] = {m.name: m for m in (
    PretrainedModel("rle-res50-coco", _MMPOSE + "v1/body_2d_keypoint/topdown_regression/coco/"
                    "td-reg_res50_rle-8xb64-210e_coco-256x192-d37efd64_20220913.pth",
                    "resnet50", "coco", (256, 192), "AP", 0.706),
    PretrainedModel("rle-res50-coco-heatmap-pretrained", _MMPOSE + "v1/body_2d_keypoint/topdown_regression/coco/"
                    "td-reg_res50_rle-pretrained-8xb64-210e_coco-256x192-2cb494ee_20220913.pth",
                    "resnet50", "coco", (256, 192), "AP", 0.719),
    PretrainedModel("rle-res101-coco", _MMPOSE + "top_down/deeppose/deeppose_res101_coco_256x192_rle-16c3d461_20220615.pth",
                    "resnet101", "coco", (256, 192), "AP", 0.722),
    PretrainedModel("rle-res152-coco", _MMPOSE + "top_down/deeppose/deeppose_res152_coco_256x192_rle-c05bdccf_20220615.pth",
                    "resnet152", "coco", (256, 192), "AP", 0.731),
    PretrainedModel("rle-res152-coco-384x288",
                    _MMPOSE + "top_down/deeppose/deeppose_res152_coco_384x288_rle-b77c4c37_20220624.pth",
                    "resnet152", "coco", (384, 288), "AP", 0.749),
    PretrainedModel("rle-res50-mpii", _MMPOSE + "top_down/deeppose/deeppose_res50_mpii_256x256_rle-5f92a619_20220504.pth",
                    "resnet50", "mpii", (256, 256), "PCKh@0.5", 0.861),
)}


class DownloadError(RuntimeError):
    """A pretrained file could not be fetched or failed its checksum; nothing was cached."""


def home() -> Path:
    """The cache folder: ``$RLEPOSE_HOME`` or ``~/.cache/rlepose``."""
    return Path(os.environ.get("RLEPOSE_HOME", "~/.cache/rlepose")).expanduser()


def checkpoint_path(model: PretrainedModel) -> Path:
    return home() / "checkpoints" / f"{model.name}.ckpt"


def download_path(model: PretrainedModel) -> Path:
    return home() / "downloads" / model.filename


def is_cached(model: PretrainedModel) -> bool:
    return checkpoint_path(model).is_file()


def _lookup(name: str | PretrainedModel) -> PretrainedModel:
    if isinstance(name, PretrainedModel):
        return name
    if name not in MODELS:
        raise ValueError(f"unknown pretrained model {name!r}; `rlepose models` lists them: {', '.join(MODELS)}")
    return MODELS[name]


def download(url: str, dest: Path, sha256_prefix: str, timeout: float = 15.0, progress: bool = True) -> Path:
    """Fetch ``url`` to ``dest`` through ``dest.part``; keep it only if its sha256 starts with
    ``sha256_prefix``. Raises :class:`DownloadError` (URL and manual path in the message)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    by_hand = f"download it yourself and put it at {dest}"
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            bar = _progress(total, dest.name) if progress else None
            received = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                if bar is not None:
                    bar.update(len(chunk))
            if bar is not None:
                bar.close()
        if total is not None and received != total:
            raise DownloadError(f"transfer of {url} cut after {received} of {total} bytes; retry, or {by_hand}")
        if not digest.hexdigest().startswith(sha256_prefix):
            raise DownloadError(f"{url}: sha256 {digest.hexdigest()[:16]}… does not match the published prefix "
                                f"{sha256_prefix}; the file is corrupt or not the published one. Retry, or {by_hand}")
        os.replace(part, dest)
        return dest
    except DownloadError:
        raise
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"could not download {url} ({reason}). Offline? {by_hand[0].upper() + by_hand[1:]}.") from None
    finally:
        part.unlink(missing_ok=True)


def _progress(total: int | None, desc: str):
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc)


#: the small models inside the package, by name: trained on the embedded rendered figures only
SHIPPED_NAME = "demo"
SHIPPED_PATH = Path(__file__).resolve().parent / "assets" / "demo_resnet18_0.5_rle_int8.pt"
SHIPPED_ONE_STAGE_NAME = "demo-one-stage"
SHIPPED_ONE_STAGE_PATH = Path(__file__).resolve().parent / "assets" / "demo_one_stage_resnet18_0.5_rle_int8.pt"


def pretrained_checkpoint(name: str | PretrainedModel, progress: bool = True) -> Path:
    """Path of our converted checkpoint of a published model, downloading and converting it on
    first use (``"demo"``, ``"demo-one-stage"``: the models that ship with the package). The published file is kept
    under ``downloads/`` (a file put there by hand is checked and used)."""
    if name == SHIPPED_NAME:
        return SHIPPED_PATH
    if name == SHIPPED_ONE_STAGE_NAME:
        return SHIPPED_ONE_STAGE_PATH
    from rlepose.convert import convert_checkpoint
    from rlepose.config import config_from_dict

    model = _lookup(name)
    ckpt = checkpoint_path(model)
    if ckpt.is_file():
        return ckpt
    raw = download_path(model)
    if raw.is_file():
        if not _sha256(raw).startswith(model.sha256_prefix):
            raise DownloadError(f"{raw} does not match the published sha256 prefix {model.sha256_prefix}: "
                                f"delete it and retry, or download {model.url} again")
    else:
        download(model.url, raw, model.sha256_prefix, progress=progress)
    base = config_from_dict({"name": model.name, "transform": {"input_size": list(model.input_size)},
                             "data": {"format": model.dataset}})
    return convert_checkpoint(raw, ckpt, "mmpose", backbone=model.backbone, base=base)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --- person detectors ------------------------------------------------------------------------

_RTMPOSE_SDK = _MMPOSE + "v1/projects/rtmposev1/onnx_sdk/"


@dataclass(frozen=True)
class PretrainedDetector:
    """A YOLOX person detector as MMPose publishes it for the RTMPose SDK: a zip holding the
    ONNX graph (``end2end.onnx``, NMS included) and its deployment notes. The hash in these
    file names belongs to the PyTorch checkpoint they were exported from, not to the zip, so a
    download is checked by opening it (a complete zip holding an ONNX graph) instead."""

    name: str
    url: str
    input_size: tuple[int, int]
    licence: str = "Apache-2.0 (MMPose RTMPose SDK); trained on Human-Art, see its terms"

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


DETECTORS: dict[str, PretrainedDetector] = {d.name: d for d in (
    PretrainedDetector("yolox-tiny", _RTMPOSE_SDK + "yolox_tiny_8xb8-300e_humanart-6f3252f9.zip", (416, 416)),
    PretrainedDetector("yolox-s", _RTMPOSE_SDK + "yolox_s_8xb8-300e_humanart-3ef259a7.zip", (640, 640)),
    PretrainedDetector("yolox-m", _RTMPOSE_SDK + "yolox_m_8xb8-300e_humanart-c2c7a14a.zip", (640, 640)),
    PretrainedDetector("yolox-l", _RTMPOSE_SDK + "yolox_l_8xb8-300e_humanart-ce1d7a62.zip", (640, 640)),
    PretrainedDetector("yolox-x", _RTMPOSE_SDK + "yolox_x_8xb8-300e_humanart-a39d44ed.zip", (640, 640)),
)}


def detector_path(detector: PretrainedDetector) -> Path:
    return home() / "detectors" / f"{detector.name}.onnx"


def detector_onnx(name: str, progress: bool = True) -> Path:
    """The ONNX graph of a published detector, downloaded and unpacked on first use (a zip put
    by hand under ``downloads/`` is used). Raises :class:`DownloadError` on failure; the cache
    never holds a partial file."""
    import zipfile

    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}")
    det = DETECTORS[name]
    out = detector_path(det)
    if out.is_file():
        return out
    raw = home() / "downloads" / det.filename
    if not raw.is_file():
        download(det.url, raw, "", progress=progress)
    try:
        with zipfile.ZipFile(raw) as archive:
            members = [m for m in archive.namelist() if m.endswith(".onnx")]
            if not members:
                raise DownloadError(f"{raw} holds no .onnx file; delete it and retry, or fetch {det.url} by hand")
            member = next((m for m in members if m.endswith("end2end.onnx")), members[0])
            out.parent.mkdir(parents=True, exist_ok=True)
            part = out.with_name(out.name + ".part")
            with archive.open(member) as src, open(part, "wb") as dst:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
            os.replace(part, out)
    except zipfile.BadZipFile:
        raw.unlink(missing_ok=True)
        raise DownloadError(f"{raw} was not a complete zip and was removed; retry, or download {det.url} and put it "
                            f"at {raw}") from None
    return out
