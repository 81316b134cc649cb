"""Result files are written whole or not at all."""
import json

import pytest

from rlepose.files import write_json


def test_write_json_replaces_whole_and_leaves_no_partial_file(tmp_path, monkeypatch):
    path = write_json(tmp_path / "a" / "r.json", {"x": 1})
    assert json.loads(path.read_text()) == {"x": 1}
    # a failure while writing (here: data that is not JSON) leaves the previous file as it was
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})
    assert json.loads(path.read_text()) == {"x": 1}
    # the rename is what makes the new content visible: interrupt just before it
    import os

    def killed(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        write_json(path, {"x": 2})
    assert json.loads(path.read_text()) == {"x": 1}
