"""The benchmark scripts run end to end in a small form and write the JSON they promise."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_script(name: str, *args: str) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], check=True, cwd=ROOT,
                   capture_output=True, text=True, timeout=600)


def test_loss_speed_small(tmp_path):
    out = tmp_path / "loss.json"
    run_script("loss_speed.py", "--repeats", "3", "--out", str(out))
    data = json.loads(out.read_text())
    assert {r["loss"] for r in data["loss_speed"]} >= {"l1", "rle", "dle"}
    row = next(r for r in data["flow_cost"] if r["config"] == "3x64")
    assert row["params"] == 53784


@pytest.mark.slow
def test_inference_speed_small(tmp_path):
    out = tmp_path / "inf.json"
    run_script("inference_speed.py", "--repeats", "2", "--batch", "2", "--out", str(out))
    data = json.loads(out.read_text())
    assert [r["head"] for r in data["rows"]] == ["regression", "heatmap"]
    assert data["ratios"]["latency_heatmap_over_regression"] > 0
