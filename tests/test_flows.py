"""RealNVP checks against independent truths: autograd Jacobians, quadrature, Table 11."""

import pytest
import torch

from rlepose.flows import RealNVP, ZukoDensity, alternating_masks



pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


def _grid(bound: float, step: float) -> torch.Tensor:
    """Midpoints of a square grid over [−bound, bound]², (M, 2)."""
    axis = torch.arange(-bound + step / 2, bound, step)
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)


def _randomized(flow: RealNVP, scale: float = 0.6, seed: int = 0) -> RealNVP:
    """Give the flow non-trivial weights so that the checks are not on a near-identity map."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * scale)
    return flow


@pytest.mark.parametrize("dim", [2, 3])
def test_coupling_stack_is_invertible(dim):
    flow = _randomized(RealNVP(dim), scale=0.3)
    x = torch.randn(500, dim) * 2
    z, log_det_inv = flow.inverse_transform(x)
    x_back, log_det_fwd = flow.forward_transform(z)
    assert torch.allclose(x_back, x, rtol=1e-9, atol=1e-9)
    assert torch.allclose(log_det_fwd, -log_det_inv, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("dim", [2, 3])
def test_log_det_matches_autograd_jacobian(dim):
    flow = _randomized(RealNVP(dim), seed=1)
    for x in torch.randn(5, dim, generator=torch.Generator().manual_seed(dim)):
        jac = torch.autograd.functional.jacobian(lambda v: flow.inverse_transform(v[None])[0][0], x)
        expected = torch.linalg.slogdet(jac).logabsdet
        assert flow.inverse_transform(x[None])[1].item() == pytest.approx(expected.item(), rel=1e-6, abs=1e-6)


def test_density_integrates_to_one():
    flow = _randomized(RealNVP(2), scale=0.2, seed=2)  # samples reach |x| ≈ 30, std ≈ 2.5
    step = 0.1
    grid = _grid(40, step)
    with torch.no_grad():
        mass = flow.log_prob(grid).exp().sum().item() * step**2
    assert mass == pytest.approx(1.0, abs=2e-3)


def test_masks_alternate_and_match_reference_layout():
    assert alternating_masks(2, 6).tolist() == [[0, 1], [1, 0]] * 3
    assert alternating_masks(3, 2).tolist() == [[0, 0, 1], [1, 1, 0]]
    with pytest.raises(ValueError):
        alternating_masks(1, 6)


@pytest.mark.parametrize("layers,width,paper_params", [
    (3, 64, 53.8e3), (3, 128, 205.8e3), (3, 256, 804.8e3), (5, 32, 40.0e3), (5, 64, 153.6e3)])
def test_parameter_counts_match_paper_table11(layers, width, paper_params):
    flow = RealNVP(2, hidden_layers=layers, hidden_features=width)
    count = sum(p.numel() for p in flow.parameters())
    assert abs(count - paper_params) < 100  # the paper prints 0.1K (804,888 as 804.8K)


def test_sample_follows_the_density():
    """Samples from an affine-only flow (s, t constant) match its analytic mean."""
    flow = RealNVP(2)
    with torch.no_grad():
        for net in list(flow.s) + list(flow.t):
            net[-2 if isinstance(net[-1], torch.nn.Tanh) else -1].weight.zero_()
    x = flow.sample(20000, generator=torch.Generator().manual_seed(0))
    # With zero weights s = tanh(bias), t = bias: x is Gaussian; compare sample and
    # quadrature means of the density.
    step = 0.1
    grid = _grid(20, step)
    with torch.no_grad():
        w = flow.log_prob(grid).exp() * step**2
    mean_quad = (grid * w[:, None]).sum(0)
    assert torch.allclose(x.mean(0), mean_quad, atol=0.1 * x.std(0).max().item())


def test_zuko_flow_is_a_drop_in_density():
    zuko = pytest.importorskip("zuko", reason="optional extra rlepose[flows] not installed")
    torch.manual_seed(0)
    density = ZukoDensity(zuko.flows.NSF(features=2, transforms=2, hidden_features=(32, 32)))
    step = 0.04
    grid = _grid(10, step)
    with torch.no_grad():
        mass = density.log_prob(grid).exp().sum().item() * step**2
    assert mass == pytest.approx(1.0, abs=5e-3)
    assert density.sample(7).shape == (7, 2)
