"""Pretrained models by name, against a real HTTP server on 127.0.0.1 serving files the test
made: download, checksum mismatch, cache hit, a transfer cut halfway, offline."""
import hashlib
import http.server
import threading

import numpy as np
import pytest
import torch

from rlepose import hub
from rlepose.inference.predictor import PosePredictor
from rlepose.cli import main
from rlepose.convert import to_mmpose
from rlepose.config import config_from_dict
from rlepose.training.module import PoseModule


class _Server:
    """Serves ``files`` {path: bytes}; ``cut`` paths announce their full length but send half."""

    def __init__(self, files: dict[str, bytes], cut: tuple[str, ...] = ()):
        self.files, self.cut, self.requests = files, cut, []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if self.path in server.cut else body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def mmpose_file(tmp_path):
    """A ResNet-18 RLE model saved in MMPose 1.x's layout (with a meta section), its bytes and
    the module it came from."""
    torch.manual_seed(0)
    cfg = config_from_dict({"name": "m", "model": {"backbone": "resnet18"}, "transform": {"input_size": [128, 96]}})
    module = PoseModule.from_config(cfg)
    with torch.no_grad():
        module.model.head.fc.weight.normal_(0, 0.02)
    path = tmp_path / "made.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": to_mmpose(module.state_dict())}, path)
    return path.read_bytes(), module


def _entry(server_url: str, data: bytes, name="test-model", wrong_hash=False) -> hub.PretrainedModel:
    prefix = hashlib.sha256(data).hexdigest()[:8]
    if wrong_hash:
        prefix = "0" * 8 if prefix != "0" * 8 else "1" * 8
    return hub.PretrainedModel(name, f"{server_url}/models/td-reg_res18_rle-{prefix}_20220913.pth", "resnet18",
                               "coco", (128, 96), "AP", 0.5)


def test_download_convert_and_cache_hit(tmp_path, monkeypatch, mmpose_file):
    data, module = mmpose_file
    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path / "home"))
    with _Server({}) as server:
        entry = _entry(server.url, data)
        server.files["/" + entry.url.split("/", 3)[3]] = data
        monkeypatch.setitem(hub.MODELS, entry.name, entry)
        predictor = PosePredictor.from_pretrained(entry.name, flip_test=False)
        assert len(server.requests) == 1
        assert hub.download_path(entry).read_bytes() == data and hub.is_cached(entry)
        assert not list((tmp_path / "home").rglob("*.part"))
    # the server is gone: the cache answers, and the converted model is the one that was served
    again = PosePredictor.from_pretrained(entry.name, flip_test=False)
    image = (np.random.default_rng(0).random((160, 120, 3)) * 255).astype(np.uint8)
    box = [10.0, 10.0, 90.0, 130.0]
    a, b = predictor.predict(image, [box]), again.predict(image, [box])
    assert np.allclose(a[0].keypoints, b[0].keypoints)
    from rlepose.training.run import load_module
    converted = load_module(hub.checkpoint_path(entry))
    x = torch.randn(2, 3, 128, 96)
    with torch.no_grad():
        assert torch.allclose(converted.model.eval()(x)[0], module.model.eval()(x)[0], atol=1e-5)


def test_checksum_mismatch_caches_nothing(tmp_path, monkeypatch, mmpose_file):
    data, _ = mmpose_file
    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path / "home"))
    with _Server({}) as server:
        entry = _entry(server.url, data, wrong_hash=True)
        server.files["/" + entry.url.split("/", 3)[3]] = data
        with pytest.raises(hub.DownloadError, match="does not match the published prefix"):
            hub.pretrained_checkpoint(entry, progress=False)
    assert not hub.download_path(entry).exists() and not hub.is_cached(entry)
    assert not list((tmp_path / "home").rglob("*.part"))


def test_transfer_cut_halfway_caches_nothing(tmp_path, monkeypatch, mmpose_file):
    data, _ = mmpose_file
    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path / "home"))
    with _Server({}) as server:
        entry = _entry(server.url, data)
        path = "/" + entry.url.split("/", 3)[3]
        server.files[path], server.cut = data, (path,)
        with pytest.raises(hub.DownloadError):
            hub.pretrained_checkpoint(entry, progress=False)
    assert not hub.download_path(entry).exists() and not hub.is_cached(entry)
    assert not list((tmp_path / "home").rglob("*.part"))


def test_offline_fails_fast_with_url_and_manual_path(tmp_path, monkeypatch, capsys, mmpose_file):
    data, _ = mmpose_file
    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path / "home"))
    with _Server({}) as server:  # started and stopped: nothing listens on its port any more
        entry = _entry(server.url, data)
    monkeypatch.setitem(hub.MODELS, entry.name, entry)
    import cv2

    cv2.imwrite(str(tmp_path / "photo.jpg"), np.zeros((64, 48, 3), np.uint8))
    assert main(["predict", str(tmp_path / "photo.jpg"), "--model", entry.name]) == 2
    err = capsys.readouterr().err
    assert entry.url in err and str(hub.download_path(entry)) in err
    # the file put there by hand is checked and used
    hub.download_path(entry).write_bytes(data)
    assert hub.pretrained_checkpoint(entry.name).is_file()


def test_published_names_carry_their_hash_prefixes():
    assert hub.MODELS["rle-res50-coco"].sha256_prefix == "d37efd64"
    assert hub.MODELS["rle-res50-mpii"].sha256_prefix == "5f92a619"
    assert {m.backbone for m in hub.MODELS.values()} == {"resnet50", "resnet101", "resnet152"}
