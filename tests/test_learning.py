"""Learning behaviour on a problem whose true density and locations are known."""
import pytest

from rlepose.toy import ToyProblem, compare_losses


@pytest.mark.slow
def test_rle_beats_fixed_shape_likelihoods_on_non_gaussian_noise():
    problem = ToyProblem(noise="mixture")  # 80% N(0, 0.5²), 20% N(0, 4²): not Laplace, not Gaussian
    rows = {r["loss"]: r for r in compare_losses(("l1", "laplace_nll", "gaussian_nll", "rle"), problem,
                                                 steps=1500, seed=0)}
    floor = rows["rle"]["true_nll"]
    for row in rows.values():  # a normalized model cannot beat the true density on held-out data
        assert row["nll"] is None or row["nll"] > floor - 0.02
    assert rows["rle"]["nll"] < rows["laplace_nll"]["nll"] - 0.1
    assert rows["rle"]["nll"] < rows["gaussian_nll"]["nll"] - 0.1
    # Location: at least as accurate as L1 (the median estimator), within 10% for seed noise.
    assert rows["rle"]["loc_error"] <= 1.10 * rows["l1"]["loc_error"]
    assert rows["rle"]["loc_error"] < rows["gaussian_nll"]["loc_error"]
