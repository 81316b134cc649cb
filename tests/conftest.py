from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "data" / "fixtures"


@pytest.fixture(scope="session")
def fixtures() -> Path:
    """The read-only real-data fixtures beside the checkout (../shared/data/fixtures)."""
    if not FIXTURES.is_dir():
        pytest.skip(f"dataset fixtures not found at {FIXTURES} (they live in ../shared beside the checkout)")
    return FIXTURES
