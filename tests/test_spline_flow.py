"""The one-dimensional flow (rlepose.flows.spline) and the losses on (N, K, 1) targets: the
density integrates to 1, log-determinants match finite differences, gradients pass gradcheck,
and RLE on one-number targets matches its hand-computed value."""
import math

import pytest
import torch
from torch.func import functional_call

from rlepose.flows import RealNVP, SplineFlow1D, rational_quadratic_spline
from rlepose.losses import FLOW_LOSSES, DLELoss, RLELoss, build_loss


def _random_flow(seed: int = 0, **kwargs) -> SplineFlow1D:
    torch.manual_seed(seed)
    flow = SplineFlow1D(**kwargs).double()
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.5 * torch.randn_like(p))
    return flow


@pytest.mark.parametrize("base_std", [1.0, 4.0])
def test_the_1d_density_integrates_to_one(base_std):
    flow = _random_flow(num_layers=3, base_std=base_std)
    x = torch.linspace(-40 * base_std, 40 * base_std, 400_001, dtype=torch.float64).unsqueeze(1)
    density = flow.log_prob(x).exp()
    assert torch.trapezoid(density, x[:, 0]).item() == pytest.approx(1.0, abs=1e-6)
    # and its mean by quadrature is what sampling gives
    samples = flow.sample(400_000)
    mean = torch.trapezoid(density * x[:, 0], x[:, 0]).item()
    assert samples.mean().item() == pytest.approx(mean, abs=0.02 * base_std)


def test_log_determinants_match_finite_differences_and_the_inverse():
    flow = _random_flow(1)
    x = torch.linspace(-7, 7, 301, dtype=torch.float64).unsqueeze(1)  # inside, across and outside the bins
    eps = 1e-6
    z, log_det = flow.inverse_transform(x)
    dz = (flow.inverse_transform(x + eps)[0] - flow.inverse_transform(x - eps)[0]) / (2 * eps)
    assert torch.allclose(log_det, dz[:, 0].log(), atol=1e-7)
    back, log_det_back = flow.forward_transform(z)
    assert torch.allclose(back, x, atol=1e-10) and torch.allclose(log_det + log_det_back, torch.zeros_like(log_det), atol=1e-10)


def test_a_single_spline_is_monotone_continuous_and_the_identity_outside():
    torch.manual_seed(2)
    w, h, d = torch.randn(6, dtype=torch.float64), torch.randn(6, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    x = torch.linspace(-3.5, 3.5, 20_001, dtype=torch.float64)
    y, _ = rational_quadratic_spline(x, w, h, d, bound=3.0)
    assert (y.diff() > 0).all() and y.diff().max() < 0.05  # increasing, no jumps at the knots
    outside = x.abs() >= 3.0
    assert torch.equal(y[outside], x[outside])


def test_gradients_pass_gradcheck_in_the_input_and_every_parameter():
    flow = _random_flow(3)
    x = (torch.randn(12, 1, dtype=torch.float64) * 2.5).requires_grad_()
    assert torch.autograd.gradcheck(flow.log_prob, (x,))
    names = [n for n, _ in flow.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for _, p in flow.named_parameters())

    def log_prob(*values):
        return functional_call(flow, dict(zip(names, values)), (x.detach(),), {}, strict=True)

    flow.forward = flow.log_prob  # functional_call calls forward
    assert torch.autograd.gradcheck(log_prob, params)


def test_the_identity_start_is_the_gaussian_base():
    flow = SplineFlow1D(zero_init=True, base_std=2.0)
    x = torch.tensor([[-9.0], [-1.0], [0.0], [0.5], [3.0]])
    expected = -0.5 * (x[:, 0] / 2) ** 2 - 0.5 * math.log(2 * math.pi) - math.log(2.0)
    assert torch.allclose(flow.log_prob(x), expected, atol=1e-6)


def test_flow_losses_take_one_dimensional_targets_with_the_spline_flow_by_default():
    for name in (*FLOW_LOSSES, "dle"):
        loss = build_loss(name, dim=1, compile=False)
        assert isinstance(loss.flow, SplineFlow1D)
        mu = torch.rand(5, 7, 1, requires_grad=True)
        value = loss(mu, torch.rand(5, 7, 1) * 0.2 + 0.05, torch.rand(5, 7, 1), torch.ones(5, 7))
        value.backward()
        assert torch.isfinite(value) and torch.isfinite(mu.grad).all()
    with pytest.raises(ValueError, match="SplineFlow1D"):
        RealNVP(1)


def test_rle_on_one_dimensional_targets_equals_its_hand_computed_value(float64):
    """Per joint: 2 log σ̂ + |x̄|/√2 + ½ log 2π − log G(x̄), x̄ = (µ̂ − µg)/σ̂, G the flow's
    density (the official Laplace on √2σ̂); DLE: log σ̂ − log G(x̄)."""
    flow = _random_flow(4)
    mu, sigma, target = torch.tensor([[[0.3], [-0.2]]]), torch.tensor([[[0.1], [0.4]]]), torch.tensor([[[0.1], [0.5]]])
    bar = ((mu - target) / sigma)[0, :, 0]
    log_g = flow.log_prob(bar.unsqueeze(1))
    s = sigma[0, :, 0]
    expected = (2 * s.log() + bar.abs() / math.sqrt(2) + 0.5 * math.log(2 * math.pi) - log_g).mean()
    assert RLELoss(dim=1, flow=flow, compile=False)(mu, sigma, target).item() == pytest.approx(expected.item(), rel=1e-12)
    dle = (s.log() - log_g).mean()
    assert DLELoss(dim=1, flow=flow, compile=False)(mu, sigma, target).item() == pytest.approx(dle.item(), rel=1e-12)
