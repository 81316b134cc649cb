"""Loss checks against closed forms, torch's own losses, finite differences and quadrature."""
import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from rlepose.flows import RealNVP, ZeroDensity
from rlepose.losses import (CalibratedRLELoss, DLELoss, FlowLoss, GaussianNLLLoss, L1Loss, L2Loss, LaplaceNLLLoss,
                            MMPoseRLELoss, PaperRLELoss, RLELoss, build_loss, LOSS_NAMES)



pytestmark = pytest.mark.usefixtures("float64")  # see conftest.py


def _batch(n=4, k=5, d=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.rand(n, k, d, generator=g) - 0.5
    target = mu + 0.1 * torch.randn(n, k, d, generator=g)
    sigma = 0.02 + 0.3 * torch.rand(n, k, d, generator=g)
    return mu, sigma, target


def _identity_flow(dim):
    """A RealNVP whose output layers are zero: the identity map, so G = N(0, I) exactly."""
    return RealNVP(dim, zero_init=True)


@pytest.mark.parametrize("q,dist", [("laplace", torch.distributions.Laplace),
                                    ("gaussian", torch.distributions.Normal)])
def test_rle_with_flat_residual_is_the_closed_form_nll(q, dist):
    mu, sigma, target = _batch()
    expected = -dist(mu, sigma).log_prob(target).sum(-1).mean()
    for loss in (PaperRLELoss(dim=2, q=q, flow=ZeroDensity()), CalibratedRLELoss(dim=2, q=q, flow=ZeroDensity(), beta=0.0)):
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


@pytest.mark.parametrize("name", [n for n in LOSS_NAMES if n != "rle_calibrated"])
def test_gradients_match_finite_differences(name):
    """The gradient of the loss value (rle_calibrated holds σ̂ fixed in the flow on purpose: its
    split is checked in test_calibrated_has_eq8_value_and_splits_the_gradients)."""
    mu, sigma, target = _batch(n=2, k=3, seed=3)
    torch.manual_seed(0)
    loss = build_loss(name, dim=2)
    if isinstance(loss, FlowLoss):
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
    weight = torch.ones(4, 5, 3)
    weight[..., 2] = 0  # 2-D-only samples in 3-D training
    expected = -torch.distributions.Laplace(mu[..., :2], sigma[..., :2]).log_prob(target[..., :2]).sum()
    for loss in (PaperRLELoss(dim=3, reduction="sum"), CalibratedRLELoss(dim=3, reduction="sum", beta=0.0)):
        assert loss(mu, sigma, target, weight).item() == pytest.approx(expected.item(), rel=1e-10)


def _phi_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("q,per_dim", [
    ("laplace", math.exp(0.5) * (1 - _phi_cdf(1.0))),  # ∫ ½e^{-|x|} φ(x) dx
    ("gaussian", 1 / (2 * math.sqrt(math.pi))),  # ∫ φ(x)² dx
])
def test_log_s_monte_carlo_matches_closed_form_for_gaussian_flow(q, per_dim):
    loss = RLELoss(dim=2, q=q, flow=_identity_flow(2))
    expected = -2 * math.log(per_dim)  # log s = −log ∫ Q G
    torch.manual_seed(0)
    assert (-loss.log_s_monte_carlo(100_000)).item() == pytest.approx(-expected, abs=0.01)


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


# --- the published forms, each recomputed here as its source writes it -----------------------

def _reference_official(mu, sigma, target, weight, flow):
    """The official code (Jeff-sjtu): ``nf_loss = log σ − log φ(x̄)`` of shape (N, K, 1) added to
    ``logQ = log(σ/amp) + |µg − µ̂|/(√2σ)`` (amp = 1/√(2π)), times the weights, summed / N.
    2-D weighs nf_loss by the first coordinate's weight, 3-D by each coordinate's."""
    n, k, d = mu.shape
    bar_mu = (mu - target) / sigma
    log_phi = flow.log_prob(bar_mu.reshape(-1, d)).reshape(n, k, 1)
    nf_loss = torch.log(sigma) - log_phi
    nf_loss = nf_loss * (weight[:, :, :1] if d == 2 else weight)
    amp = 1 / math.sqrt(2 * math.pi)
    log_q_term = (torch.log(sigma / amp) + torch.abs(target - mu) / (math.sqrt(2) * sigma)) * weight
    return (nf_loss + log_q_term).sum() / n


def _reference_mmpose(mu, sigma, target, weight, flow, q):
    """MMPose 1.x ``RLELoss``: error = (pred − target)/σ, ``nf_loss = log σ − log φ`` broadcast,
    plus ``log(2σ) + |error|`` (laplace) or ``log(σ√(2π)) + error²/2`` (gaussian), × weight, / N."""
    n, k, d = mu.shape
    error = (mu - target) / sigma
    log_phi = flow.log_prob(error.reshape(-1, d)).reshape(n, k, 1)
    nf_loss = torch.log(sigma) - log_phi
    if q == "laplace":
        loss_q = torch.log(sigma * 2) + torch.abs(error)
    else:
        loss_q = torch.log(sigma * math.sqrt(2 * math.pi)) + 0.5 * error**2
    return ((nf_loss + loss_q) * weight).sum() / n


@pytest.mark.parametrize("d", [2, 3])
def test_rle_loss_matches_the_official_code(d):
    mu, sigma, target = _batch(d=d, seed=7)
    torch.manual_seed(1)
    flow = RealNVP(d)
    weight = (torch.rand(4, 5, 1) > 0.3).to(mu.dtype).expand(4, 5, d).clone()
    ours = RLELoss(dim=d, flow=flow, reduction="batch")(mu, sigma, target, weight)
    assert ours.item() == pytest.approx(_reference_official(mu, sigma, target, weight, flow).item(), rel=1e-12)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("q", ["laplace", "gaussian"])
def test_mmpose_form_matches_mmpose(d, q):
    mu, sigma, target = _batch(d=d, seed=8)
    torch.manual_seed(2)
    flow = RealNVP(d)
    weight = (torch.rand(4, 5, 1) > 0.3).to(mu.dtype)
    ours = MMPoseRLELoss(dim=d, q=q, flow=flow, reduction="batch")(mu, sigma, target, weight[..., 0])
    assert ours.item() == pytest.approx(_reference_mmpose(mu, sigma, target, weight, flow, q).item(), rel=1e-12)
    if q == "gaussian":  # RLELoss's Gaussian Q is MMPose's
        same = RLELoss(dim=d, q=q, flow=flow, reduction="batch")(mu, sigma, target, weight[..., 0])
        assert same.item() == pytest.approx(ours.item(), rel=1e-12)


def test_paper_form_is_eq8_with_prediction_minus_label_residual():
    mu, sigma, target = _batch(seed=9)
    torch.manual_seed(3)
    flow = RealNVP(2)
    bar = (mu - target) / sigma
    expected = (sigma.log() + bar.abs() + math.log(2)).sum(-1) - flow.log_prob(bar.reshape(-1, 2)).reshape(4, 5)
    ours = PaperRLELoss(dim=2, flow=flow, reduction="none")(mu, sigma, target)
    assert torch.allclose(ours, expected, rtol=1e-12)
    # the flow sees µ̂ − µg, not µg − µ̂: an asymmetric flow tells the two apart
    flipped = PaperRLELoss(dim=2, flow=flow, reduction="none")(target, sigma, mu)
    assert not torch.allclose(ours, flipped)


def test_q_choices_are_checked():
    with pytest.raises(ValueError, match="unknown Q"):
        build_loss("rle_mmpose", q="student")
    with pytest.raises(ValueError, match="needs a Q"):
        CalibratedRLELoss(q=None)


def test_default_rle_is_the_published_recipe_in_code_and_config():
    """RLELoss() and loss: {name: rle} are the official code's loss with its unit-base flow, and
    the paper's COCO config trains exactly that, with no warm-up and the official head."""
    from rlepose.config import LossConfig, load_config

    mu, sigma, target = _batch(seed=13)
    torch.manual_seed(4)
    flow = RealNVP(2)
    built = LossConfig().build(2)
    assert type(built) is RLELoss and type(RLELoss()) is RLELoss and built.q == "laplace"
    assert built.flow.base_std == 1.0 and RLELoss().flow.base_std == 1.0
    built.flow = flow
    weight = torch.ones(4, 5, 2)
    reference = _reference_official(mu, sigma, target, weight, flow) * 4 / 20  # batch → per weighted joint
    assert built(mu, sigma, target).item() == pytest.approx(reference.item(), rel=1e-12)
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs/coco/res50_rle.yaml")
    assert cfg.loss.name == "rle" and cfg.flow_warmup_epochs() == 0
    assert cfg.model.coord_norm and cfg.model.fc_init_gain == 0.01


# --- rle_calibrated: σ̂ is Q's scale, the flow fits the law of x̄ -----------------------------

def test_calibrated_has_eq8_value_and_splits_the_gradients():
    """Same value as Eq. 8; σ̂'s gradient is exactly Laplace NLL's; µ̂'s is Laplace NLL's plus the
    flow's score; the flow's is that of its own NLL at x̄ (σ̂ fixed)."""
    mu, sigma, target = _batch(seed=11)
    torch.manual_seed(6)
    flow = RealNVP(2)
    q_loss = CalibratedRLELoss(dim=2, flow=flow, reduction="sum", beta=0.0)
    joint_loss = PaperRLELoss(dim=2, flow=flow, reduction="sum")
    assert q_loss(mu, sigma, target).item() == pytest.approx(joint_loss(mu, sigma, target).item(), rel=1e-12)

    mu_, sigma_ = mu.clone().requires_grad_(), sigma.clone().requires_grad_()
    q_loss(mu_, sigma_, target).backward()
    mu_l, sigma_l = mu.clone().requires_grad_(), sigma.clone().requires_grad_()
    LaplaceNLLLoss(reduction="sum")(mu_l, sigma_l, target).backward()
    assert torch.allclose(sigma_.grad, sigma_l.grad, rtol=1e-10)
    x = ((mu - target) / sigma).reshape(-1, 2).requires_grad_()
    (-flow.log_prob(x).sum()).backward()
    assert torch.allclose(mu_.grad, mu_l.grad + x.grad.reshape(mu.shape) / sigma, rtol=1e-10)

    flow.zero_grad()
    q_loss(mu, sigma, target).backward()
    grads = [p.grad.clone() for p in flow.parameters()]
    flow.zero_grad()
    (-flow.log_prob(((mu - target) / sigma).reshape(-1, 2)).sum()).backward()
    assert all(torch.allclose(a, p.grad, rtol=1e-10) for a, p in zip(grads, flow.parameters()))


@pytest.mark.parametrize("beta", [1.0, 0.5, -0.5])
def test_beta_weighting_matches_the_closed_form_and_keeps_sigma_at_the_mean_absolute_error(beta):
    """β-NLL (Seitzer et al. 2022), Laplace Q, σ̂ as Q's scale, by hand: each coordinate's terms are
    σ̂_d^β · (log σ̂_d + |x̄_d| + log 2) and the flow term s · (−log G(x̄)), s = (σ̂_1 σ̂_2)^(β/2),
    the factors held fixed. With G = N(0, b²I) (identity flow on a base of std b):
    ∂/∂µ̂_d = σ̂_d^(β−1) sign(µ̂_d − µg_d) + s · x̄_d / (b² σ̂_d)  (β = 1: L1's gradient plus the flow's),
    ∂/∂σ̂_d = σ̂_d^(β−1) (1 − |µ̂_d − µg_d| / σ̂_d)  (zero where σ̂ is the absolute error)."""
    mu, sigma, target = _batch(seed=21)
    b = 4.0
    flow = RealNVP(2, zero_init=True, base_std=b)
    loss = CalibratedRLELoss(dim=2, flow=flow, beta=beta, reduction="sum")
    x = (mu - target) / sigma
    w = sigma**beta
    s = sigma.prod(-1, keepdim=True) ** (beta / 2)
    value = (w * (sigma.log() + x.abs() + math.log(2))).sum() \
        + (s.squeeze(-1) * ((x**2).sum(-1) / (2 * b**2) + math.log(2 * math.pi * b**2))).sum()
    mu_, sigma_ = mu.clone().requires_grad_(), sigma.clone().requires_grad_()
    out = loss(mu_, sigma_, target)
    assert out.item() == pytest.approx(value.item(), rel=1e-12)
    out.backward()
    assert torch.allclose(mu_.grad, w / sigma * torch.sign(mu - target) + s * x / (b**2 * sigma), rtol=1e-10)
    assert torch.allclose(sigma_.grad, w / sigma * (1 - (mu - target).abs() / sigma), rtol=1e-10, atol=1e-12)
    # β = 0 is the plain likelihood (Eq. 8's value)
    plain = CalibratedRLELoss(dim=2, flow=flow, beta=0.0, reduction="sum")
    eq8 = (sigma.log() + x.abs() + math.log(2)).sum() + ((x**2).sum(-1) / (2 * b**2) + math.log(2 * math.pi * b**2)).sum()
    assert plain(mu, sigma, target).item() == pytest.approx(eq8.item(), rel=1e-12)


def test_calibrated_defaults_beta_one_half_and_a_flat_flow():
    from rlepose.config import LossConfig
    assert CalibratedRLELoss(2).beta == 0.5 and build_loss("rle_calibrated", q="gaussian").beta == 0.5
    assert LossConfig(name="rle_calibrated").build(2).beta == 0.5
    assert LossConfig(name="rle_calibrated", beta=0.0).build(2).beta == 0.0
    assert LossConfig(name="rle_calibrated", beta=1.0).build(3).beta == 1.0
    flow = CalibratedRLELoss(2).flow
    assert flow.base_std == 4.0 and all(p.abs().sum() == 0 for n, p in flow.named_parameters() if re.match(r"[st]\.\d+\.4\.", n))


def _label_grid(bound, n=401):
    """Midpoints of an n×n grid over [−bound, bound]² as labels (n², 1, 2), and the step."""
    step = 2 * bound / n
    axis = torch.linspace(-bound + step / 2, bound - step / 2, n)
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 1, 2), step


@pytest.mark.parametrize("kind", ["rle", "rle_paper", "rle_calibrated", "dle"])
def test_log_density_integrates_to_one_over_labels(kind):
    """The density ``log_density`` scores is normalized in the label, for every variant."""
    torch.manual_seed(12)
    flow = RealNVP(2)
    loss = build_loss(kind, dim=2, flow=flow)
    sigma = torch.tensor([0.07, 0.04])
    labels, step = _label_grid(2.0, n=601)  # x̄ steps of 0.1–0.2 where the flow varies fastest
    mu = torch.zeros_like(labels)
    mass = loss.log_density(mu, sigma.expand_as(mu), labels).exp().sum() * step**2
    assert mass.item() == pytest.approx(1.0, abs=0.01)


def test_flow_warmup_gives_mu_the_q_gradient_only_and_keeps_the_value():
    """During the warm-up the loss value is unchanged, µ̂ gets exactly Laplace NLL's gradient, σ̂ its
    own, and the flow still trains; after it the full gradient is back."""
    torch.manual_seed(0)
    loss = CalibratedRLELoss(2, beta=0.0)
    with torch.no_grad():  # a flow that is not flat, so its gradient on µ̂ is not ~0
        for p in loss.flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    mu = torch.randn(4, 3, 2, requires_grad=True)
    sigma = (0.2 + torch.rand(4, 3, 2)).requires_grad_()
    target = torch.randn(4, 3, 2)
    full = loss(mu, sigma, target)
    g_full = torch.autograd.grad(full, mu)[0]
    loss.set_flow_warmup(True)
    warm = loss(mu, sigma, target)
    g_mu, g_sigma = torch.autograd.grad(warm, (mu, sigma), retain_graph=True)
    flow_grads = torch.autograd.grad(warm, list(loss.flow.parameters()), allow_unused=True)
    laplace = build_loss("laplace_nll", dim=2)(mu, sigma, target)
    g_lap, g_lap_sigma = torch.autograd.grad(laplace, (mu, sigma))
    assert warm.item() == pytest.approx(full.item())
    assert torch.allclose(g_mu, g_lap, atol=1e-6) and torch.allclose(g_sigma, g_lap_sigma, atol=1e-6)
    assert not torch.allclose(g_full, g_lap, atol=1e-3)
    assert any(g is not None and g.abs().sum() > 0 for g in flow_grads)


def test_loss_sections_of_the_keyed_schema_read_as_the_loss_they_trained():
    """Checkpoints that store form/scale/standardize keys load as the class with that formula."""
    from rlepose.config import config_from_dict, upgrade_loss_section

    old = {"name": "rle", "form": "paper", "scale": None, "beta": 0.0, "standardize": False, "log_s_grid": None}
    assert upgrade_loss_section(old) == {"name": "rle_calibrated", "beta": 0.0, "q": "laplace"}
    assert upgrade_loss_section({**old, "scale": "joint"})["name"] == "rle_paper"
    assert upgrade_loss_section({**old, "form": "official"}) == {"name": "rle", "q": "laplace"}
    assert upgrade_loss_section({"name": "rle_gaussian", "form": "mmpose"}) == {"name": "rle_mmpose", "q": "gaussian"}
    assert upgrade_loss_section({"name": "l1"}) == {"name": "l1"}
    cfg = config_from_dict({"loss": {**old, "form": "official", "flow_base_std": 1.0}})
    assert type(cfg.loss.build(2)) is RLELoss and cfg.loss.build(2).flow.base_std == 1.0
    with pytest.raises(ValueError, match="beta is a setting of rle_calibrated"):
        config_from_dict({"loss": {"name": "rle", "beta": 1.0}})
    with pytest.raises(ValueError, match="choose from"):
        config_from_dict({"loss": {"name": "rle_official"}})
