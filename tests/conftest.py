import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "data" / "fixtures"

# Losses run eagerly in the tests (and the commands they start), where compiling would only cost
# time; the tests of the compiled path ask for it (tests/test_compiled_loss.py).
os.environ["RLEPOSE_COMPILE_LOSS"] = "0"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The read-only real-data fixtures beside the checkout (../shared/data/fixtures)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"dataset fixtures not found at {FIXTURES} (they live in ../shared beside the checkout)")
    return FIXTURES


@pytest.fixture
def float64():
    """Run a test in double precision (checks against closed forms and finite differences)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def rlepose_home(tmp_path_factory, monkeypatch):
    """Caches (downloads, exported graphs) under a fresh folder, never the user's ~/.cache."""
    monkeypatch.setenv("RLEPOSE_HOME", str(tmp_path_factory.mktemp("rlepose_home")))
