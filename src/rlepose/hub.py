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


def pretrained_checkpoint(name: str | PretrainedModel, progress: bool = True) -> Path:
    """Path of our converted checkpoint of a published model, downloading and converting it on
    first use. The published file is kept under ``downloads/`` (a file put there by hand is
    checked and used)."""
    from rlepose.convert import convert_checkpoint
    from rlepose.training.config import config_from_dict

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
