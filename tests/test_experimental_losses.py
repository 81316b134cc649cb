"""The experimental losses of the benchmarks (benchmarks/experimental_losses.py), against closed
forms and quadrature."""
import math
import sys
from pathlib import Path

import pytest
import torch

from rlepose.flows import RealNVP
from rlepose.losses import LaplaceNLLLoss, PaperRLELoss

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from experimental_losses import LogSRLELoss, StandardizedRLELoss, experimental_loss, trainable_section  # noqa: E402
from test_losses import _batch, _phi_cdf  # noqa: E402  (the loss tests' batch and normal CDF)

pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


def _identity_flow(dim):
    return RealNVP(dim, zero_init=True)


@pytest.mark.parametrize("q,per_dim", [
    ("laplace", math.exp(0.5) * (1 - _phi_cdf(1.0))),  # ∫ ½e^{-|x|} φ(x) dx
    ("gaussian", 1 / (2 * math.sqrt(math.pi))),  # ∫ φ(x)² dx
])
def test_log_s_grid_matches_closed_form_for_gaussian_flow(q, per_dim):
    loss = LogSRLELoss(dim=2, q=q, flow=_identity_flow(2), grid=200)
    expected = -2 * math.log(per_dim)  # log s = −log ∫ Q G
    assert (-loss.log_s()).item() == pytest.approx(-expected, abs=1e-3)  # Laplace kink at 0


def test_log_s_term_is_added_per_weighted_joint():
    mu, sigma, target = _batch()
    flow = _identity_flow(2)
    plain = PaperRLELoss(dim=2, flow=flow, reduction="sum")(mu, sigma, target)
    with_s = LogSRLELoss(dim=2, flow=flow, grid=200, reduction="sum")
    assert (with_s(mu, sigma, target) - plain).item() == pytest.approx(-20 * with_s.log_s().item())


def test_rows_build_the_experimental_loss_and_train_with_the_paper_flow():
    section = {"name": "rle_standardized", "flow_warmup_epochs": 0}
    assert isinstance(experimental_loss(section, 2), StandardizedRLELoss)
    assert trainable_section(section)["name"] == "rle_paper"
    assert experimental_loss({"name": "rle"}, 2) is None and trainable_section({"name": "rle"}) == {"name": "rle"}
    names = {n for n, _ in experimental_loss(section, 2).named_parameters()}
    assert names == {n for n, _ in PaperRLELoss(2).named_parameters()}


# --- the standardized form ------------------------------------------------------

def _grid_expectations(loss, bound=12.0, n=601):
    """∫QG and E_r|x_d| by a midpoint rule on a fine 2-D grid (independent of the quadrature)."""
    step = 2 * bound / n
    axis = torch.linspace(-bound + step / 2, bound - step / 2, n)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    with torch.no_grad():
        log_qg = log_q_sum(grid, loss.q) + loss.flow.log_prob(grid)
    w = torch.softmax(log_qg, 0)
    return torch.logsumexp(log_qg, 0) + 2 * math.log(step), (w[:, None] * grid.abs()).sum(0)


def log_q_sum(x, q):
    from rlepose.losses import log_q
    return log_q(x, q).sum(-1)


@pytest.mark.parametrize("q", ["laplace", "gaussian"])
def test_standardized_quadrature_matches_a_fine_grid(q):
    torch.manual_seed(4)
    loss = StandardizedRLELoss(dim=2, q=q, flow=RealNVP(2), quadrature_points=1 << 16)
    log_integral, a = _grid_expectations(loss)
    with torch.no_grad():
        a_quad, log_integral_quad = loss.residual_scale()
    assert log_integral_quad.item() == pytest.approx(log_integral.item(), abs=0.01)
    assert torch.allclose(a_quad, a, rtol=0.01)


def _label_grid(bound, n=401):
    """Midpoints of an n×n grid over [−bound, bound]² as labels (n², 1, 2), and the step."""
    step = 2 * bound / n
    axis = torch.linspace(-bound + step / 2, bound - step / 2, n)
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 1, 2), step


def test_standardized_density_integrates_to_one_with_unit_mean_absolute_deviation():
    """The per-joint loss is −log p(µg) of a density in µg: integrate exp(−loss) over labels."""
    torch.manual_seed(5)
    loss = StandardizedRLELoss(dim=2, flow=RealNVP(2), quadrature_points=1 << 18, reduction="none")
    sigma = torch.tensor([0.05, 0.12])
    labels, step = _label_grid(1.5)
    mu = torch.zeros_like(labels)
    with torch.no_grad():
        p = torch.exp(-loss(mu, sigma.expand_as(mu), labels))[:, 0]
    mass = p.sum() * step**2
    mad = (p[:, None] * labels[:, 0].abs()).sum(0) * step**2 / mass
    assert mass.item() == pytest.approx(1.0, abs=0.01)
    assert torch.allclose(mad, sigma, rtol=0.02)  # σ̂ is the mean absolute error it predicts


def test_standardized_with_flat_flow_is_laplace_nll():
    """A flow much wider than Q is flat where Q lives: the standardized loss is Laplace NLL."""
    mu, sigma, target = _batch(seed=10)
    flow = RealNVP(2, base_std=1e4, zero_init=True)
    loss = StandardizedRLELoss(dim=2, flow=flow, quadrature_points=1 << 16)
    expected = LaplaceNLLLoss()(mu, sigma, target)
    assert loss(mu, sigma, target).item() == pytest.approx(expected.item(), abs=2e-3)
