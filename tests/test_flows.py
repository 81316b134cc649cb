"""RealNVP checks against independent truths: autograd Jacobians, quadrature, Table 11."""

import math

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
    flow = _randomized(RealNVP(dim), scale=0.3, seed=1)  # at 0.6 some Jacobians reach cond. 1e11
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
        flow.weight2.zero_()  # the last linear layer of every s and t network
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


class _SequentialRealNVP(torch.nn.Module):
    """The flow as the official code writes it (an s and a t ``nn.Sequential`` per coupling,
    binary masks multiplied in): the reference that the stacked implementation must match."""

    def __init__(self, dim, num_layers=6, hidden_layers=3, hidden_features=64):
        super().__init__()
        def mlp(bounded):
            widths = [dim] + [hidden_features] * (hidden_layers - 1) + [dim]
            layers = []
            for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
                layers += [torch.nn.Linear(a, b)] + ([torch.nn.LeakyReLU()] if i < hidden_layers - 1 else [])
            return torch.nn.Sequential(*layers, *([torch.nn.Tanh()] if bounded else []))
        self.register_buffer("mask", alternating_masks(dim, num_layers))
        self.s = torch.nn.ModuleList([mlp(True) for _ in range(num_layers)])
        self.t = torch.nn.ModuleList([mlp(False) for _ in range(num_layers)])

    def log_prob(self, x):
        log_det, z = x.new_zeros(x.shape[0]), x
        for k in reversed(range(len(self.s))):
            m = self.mask[k]
            s, t = self.s[k](z * m) * (1 - m), self.t[k](z * m) * (1 - m)
            z = z * m + (1 - m) * (z - t) * torch.exp(-s)
            log_det = log_det - s.sum(1)
        return -0.5 * (z**2).sum(1) - 0.5 * x.shape[1] * math.log(2 * math.pi) + log_det


@pytest.mark.parametrize("dtype,scale,tol", [(torch.float32, 1.0, 1e-5), (torch.float64, 3.0, 1e-10)])
@pytest.mark.parametrize("dim,hidden_layers", [(2, 3), (3, 3), (2, 5)])
def test_stacked_flow_matches_the_official_layout_in_value_gradients_and_state_dict(dim, hidden_layers, dtype,
                                                                                     scale, tol):
    """Same weights (loaded by the official code's key names), same log-density and the same
    gradients for the input and every weight (float32 at its initialization to 1e-5; float64
    with weights ×3, every coupling strongly nonlinear, to 1e-10; gradients relative to their
    largest entry); the state dict round-trips."""
    torch.set_default_dtype(dtype)
    torch.manual_seed(dim + hidden_layers)
    reference = _SequentialRealNVP(dim, hidden_layers=hidden_layers)
    with torch.no_grad():
        for p in reference.parameters():
            p.mul_(scale)
    flow = RealNVP(dim, hidden_layers=hidden_layers)
    flow.load_state_dict(reference.state_dict())
    assert list(flow.state_dict()) == list(reference.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(flow.state_dict().values(), reference.state_dict().values()))
    x = (torch.randn(300, dim) * 2).requires_grad_()
    ours, theirs = flow.log_prob(x), reference.log_prob(x)
    assert torch.allclose(ours, theirs, rtol=tol, atol=tol)
    weights = torch.randn(300)  # a non-uniform upstream gradient
    g_ours = torch.autograd.grad((ours * weights).sum(), [x, *flow.parameters()])
    g_theirs = torch.autograd.grad((theirs * weights).sum(), [x, *reference.parameters()])
    def close(a, b):  # to tol relative to the gradient's own scale
        return torch.allclose(a, b, rtol=tol, atol=tol * max(1.0, b.abs().max().item()))

    assert close(g_ours[0], g_theirs[0])
    grads = dict(zip([n for n, _ in flow.named_parameters()], g_ours[1:]))
    for name, g in zip([n for n, _ in reference.named_parameters()], g_theirs[1:]):
        net, k, j, kind = name.split(".")
        assert close(grads[f"{kind}{int(j) // 2}"][int(k), "st".index(net)], g), name


def test_flow_refuses_a_state_dict_with_missing_or_misshapen_official_keys():
    sd = _SequentialRealNVP(2).state_dict()
    del sd["t.3.2.weight"]
    with pytest.raises(RuntimeError, match="t.3.2.weight"):
        RealNVP(2).load_state_dict(sd)
    sd = _SequentialRealNVP(2, hidden_features=32).state_dict()
    with pytest.raises(RuntimeError, match="size mismatch"):
        RealNVP(2).load_state_dict(sd)


@pytest.mark.slow
def test_the_rle_loss_compiles_as_one_graph_and_matches_eager():
    """torch.compile(fullgraph=True) takes the loss with its flow (the hand-written backward
    included): no graph break, the same value and gradients."""
    from rlepose.losses import RLELoss

    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    loss = RLELoss(2, flow=RealNVP(2, hidden_features=16))
    mu = torch.rand(8, 17, 2, requires_grad=True)
    sigma = torch.rand(8, 17, 2).add(0.05).requires_grad_()
    target = torch.rand(8, 17, 2)
    ref = loss(mu, sigma, target)
    g_ref = torch.autograd.grad(ref, [mu, sigma, *loss.parameters()])
    out = torch.compile(loss, fullgraph=True)(mu, sigma, target)
    grads = torch.autograd.grad(out, [mu, sigma, *loss.parameters()])
    assert out.item() == pytest.approx(ref.item(), rel=1e-5)
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-5 * b.abs().max().item()) for a, b in zip(grads, g_ref))
