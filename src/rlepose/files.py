"""Result files that a crash or a kill never leaves half-written: write a temporary file beside
the target, then rename it over the target (atomic on POSIX and Windows)."""
from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["write_json"]


def write_json(path: str | Path, data, indent: int | None = None) -> Path:
    """``data`` as JSON at ``path`` (folders made), through ``path.tmp`` and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=indent))
    os.replace(tmp, path)
    return path
