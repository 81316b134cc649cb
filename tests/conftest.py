from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "data" / "fixtures"


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
