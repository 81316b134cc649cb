"""What every analysis figure shares: matplotlib without a display, and saving with a title."""
from __future__ import annotations

from pathlib import Path

__all__ = ["pyplot", "save_figure"]


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out_file: Path, title: str = "", dpi: int = 110) -> Path:
    """Add the overall ``title``, lay out, write ``out_file`` (folders made) and close."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_file, dpi=dpi)
    pyplot().close(fig)
    return out_file
