"""Loss checks against closed forms, torch's own losses, finite differences and quadrature."""
import math

import pytest
import torch
import torch.nn.functional as F

from rlepose.flows import RealNVP, ZeroDensity
from rlepose.losses import (DLELoss, GaussianNLLLoss, L1Loss, L2Loss, LaplaceNLLLoss, RLELoss,
                            build_loss, LOSS_NAMES)



pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


def _batch(n=4, k=5, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, k, d, generator=g) - 0.5
    target = mu + 0.1 * torch.randn(n, k, d, generator=g)
    sigma = 0.02 + 0.3 * torch.rand(n, k, d, generator=g)
    return mu, sigma, target


def _identity_flow(dim):
    """A RealNVP whose output layers are zero: the identity map, so G = N(0, I) exactly."""
    flow = RealNVP(dim)
    with torch.no_grad():
        for net in list(flow.s) + list(flow.t):
            linear = [m for m in net if isinstance(m, torch.nn.Linear)][-1]
            linear.weight.zero_()
            linear.bias.zero_()
    return flow


@pytest.mark.parametrize("q,dist", [("laplace", torch.distributions.Laplace),
                                    ("gaussian", torch.distributions.Normal)])
def test_rle_with_flat_residual_is_the_closed_form_nll(q, dist):
    mu, sigma, target = _batch()
    loss = RLELoss(dim=2, q=q, flow=ZeroDensity())
    expected = -dist(mu, sigma).log_prob(target).sum(-1).mean()
    assert loss(mu, sigma, target).item() == pytest.approx(expected.item(), rel=1e-12)


def test_learned_scale_baselines_are_closed_form():
    mu, sigma, target = _batch(seed=1)
    lap = -torch.distributions.Laplace(mu, sigma).log_prob(target).sum(-1).mean()
    assert LaplaceNLLLoss()(mu, sigma, target).item() == pytest.approx(lap.item(), rel=1e-12)
    gauss = F.gaussian_nll_loss(mu, target, sigma**2, full=True, reduction="mean") * 2
    assert GaussianNLLLoss()(mu, sigma, target).item() == pytest.approx(gauss.item(), rel=1e-12)


def test_l1_l2_equal_torch_losses_up_to_the_coordinate_count():
    mu, sigma, target = _batch(d=3)
    assert L1Loss()(mu, sigma, target).item() == pytest.approx(3 * F.l1_loss(mu, target).item())
    assert L2Loss()(mu, sigma, target).item() == pytest.approx(3 * F.mse_loss(mu, target).item())


def test_dle_with_identity_flow_is_gaussian_nll():
    mu, sigma, target = _batch(d=3, seed=2)
    expected = GaussianNLLLoss()(mu, sigma, target)
    assert DLELoss(dim=3, flow=_identity_flow(3))(mu, sigma, target).item() == pytest.approx(expected.item())


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_gradients_match_finite_differences(name):
    mu, sigma, target = _batch(n=2, k=3, seed=3)
    torch.manual_seed(0)
    loss = build_loss(name, dim=2)
    if isinstance(loss, RLELoss):
        loss.flow = RealNVP(2, hidden_features=8)
    mu.requires_grad_(True)
    sigma.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m, s: loss(m, s, target), (mu, sigma))


def test_flow_parameters_are_trained_by_the_loss():
    mu, sigma, target = _batch()
    loss = RLELoss(dim=2)
    loss(mu, sigma, target).backward()
    grads = [p.grad for p in loss.parameters()]
    assert len(grads) > 0 and all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_zero_weight_removes_a_joint_exactly(name):
    mu, sigma, target = _batch(seed=4)
    torch.manual_seed(0)
    loss = build_loss(name, dim=2, reduction="sum")
    weight = torch.ones(4, 5)
    weight[1, 2] = 0
    target_far = target.clone()
    target_far[1, 2] = 1e3  # whatever the label of a zero-weight joint, it must not count
    mu = mu.requires_grad_(True)
    full = loss(mu, sigma, target_far, weight)
    keep = torch.ones(4, 5, dtype=torch.bool)
    keep[1, 2] = False
    reference = sum(loss(mu[i : i + 1, keep[i]], sigma[i : i + 1, keep[i]], target[i : i + 1, keep[i]])
                    for i in range(4))
    assert full.item() == pytest.approx(reference.item(), rel=1e-12)
    (grad,) = torch.autograd.grad(full, mu)
    assert torch.all(grad[1, 2] == 0)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_all_zero_weights_give_zero_without_nan(name):
    mu, sigma, target = _batch()
    mu.requires_grad_(True)
    value = build_loss(name, dim=2)(mu, sigma, target, torch.zeros(4, 5))
    value.backward()
    assert value.item() == 0.0
    assert torch.isfinite(mu.grad).all()


def test_reductions_by_hand():
    mu, sigma, target = _batch(n=3, k=2)
    weight = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    per_joint = (target - mu).abs().sum(-1) * weight
    assert L1Loss(reduction="mean")(mu, sigma, target, weight).item() == pytest.approx(per_joint.sum().item() / 3)
    assert L1Loss(reduction="batch")(mu, sigma, target, weight).item() == pytest.approx(per_joint.sum().item() / 3)
    assert L1Loss(reduction="sum")(mu, sigma, target, weight).item() == pytest.approx(per_joint.sum().item())
    assert torch.allclose(L1Loss(reduction="none")(mu, sigma, target, weight), per_joint)
    weight[2, 0] = 1.0  # now 4 weighted joints, batch of 3
    per_joint = (target - mu).abs().sum(-1) * weight
    assert L1Loss()(mu, sigma, target, weight).item() == pytest.approx(per_joint.sum().item() / 4)
    assert L1Loss(reduction="batch")(mu, sigma, target, weight).item() == pytest.approx(per_joint.sum().item() / 3)


def test_unlabelled_coordinate_keeps_only_q_terms_of_labelled_ones():
    mu, sigma, target = _batch(d=3, seed=5)
    loss = RLELoss(dim=3, reduction="sum")
    weight = torch.ones(4, 5, 3)
    weight[..., 2] = 0  # 2-D-only samples in 3-D training
    expected = -torch.distributions.Laplace(mu[..., :2], sigma[..., :2]).log_prob(target[..., :2]).sum()
    assert loss(mu, sigma, target, weight).item() == pytest.approx(expected.item(), rel=1e-10)


def _phi_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("q,per_dim", [
    ("laplace", math.exp(0.5) * (1 - _phi_cdf(1.0))),  # ∫ ½e^{-|x|} φ(x) dx
    ("gaussian", 1 / (2 * math.sqrt(math.pi))),  # ∫ φ(x)² dx
])
def test_log_s_matches_closed_form_for_gaussian_flow(q, per_dim):
    loss = RLELoss(dim=2, q=q, flow=_identity_flow(2), log_s_grid=200)
    expected = -2 * math.log(per_dim)  # log s = −log ∫ Q G
    assert (-loss.log_s()).item() == pytest.approx(-expected, abs=1e-3)  # Laplace kink at 0
    torch.manual_seed(0)
    assert (-loss.log_s_monte_carlo(100_000)).item() == pytest.approx(-expected, abs=0.01)


def test_log_s_term_is_added_per_weighted_joint():
    mu, sigma, target = _batch()
    flow = _identity_flow(2)
    plain = RLELoss(dim=2, flow=flow, reduction="sum")(mu, sigma, target)
    with_s = RLELoss(dim=2, flow=flow, log_s_grid=200, reduction="sum")
    assert (with_s(mu, sigma, target) - plain).item() == pytest.approx(-20 * with_s.log_s().item())


def test_bad_shapes_and_names_are_rejected():
    mu, sigma, target = _batch()
    with pytest.raises(ValueError, match="weight"):
        L1Loss()(mu, sigma, target, torch.ones(4))
    with pytest.raises(ValueError, match=r"\(N, K, D\)"):
        L1Loss()(mu[0], sigma[0], target[0])
    with pytest.raises(ValueError, match="D=2"):
        RLELoss(dim=3)(mu, sigma, target)
    with pytest.raises(ValueError, match="unknown Q"):
        RLELoss(q="cauchy")
    with pytest.raises(ValueError, match="unknown loss"):
        build_loss("huber")
