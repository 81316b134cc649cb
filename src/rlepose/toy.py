"""A synthetic heteroscedastic regression problem for comparing the losses quickly on a CPU.

Inputs x ∈ [−1, 1]^F; each of K "joints" has a true location µ(x) ∈ R^D (a smooth nonlinear
function) and a true scale b(x); labels are µ(x) + b(x)·ε with ε drawn from a fixed
non-Gaussian, heavy-tailed law (default Student-t, ν = 3, or a two-component mixture) —
the label ambiguity that RLE is meant to learn. Because µ(x) is known, location error is
measured against the truth, not the noisy labels; because every loss here is a normalized
likelihood (RLE's density with its log s term), held-out negative log-likelihoods are comparable.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from rlepose.losses import CalibratedRLELoss, DLELoss, FlowLoss, JointLoss, L1Loss, L2Loss, build_loss

__all__ = ["ToyProblem", "ToyRegressor", "fit", "loss_from_spec", "heldout_nll", "compare_losses",
           "summarize_seeds"]


@dataclass(frozen=True)
class ToyProblem:
    features: int = 4
    joints: int = 2
    dim: int = 2
    noise: str = "student_t"  # or "mixture"
    df: float = 3.0
    base_scale: float = 0.03

    def sample(self, n: int, seed: int) -> dict[str, Tensor]:
        """Draw n samples: ``x`` (n, F), ``y`` labels and ``mu`` truth (n, K, D), ``scale`` (n, K, D)."""
        g = torch.Generator().manual_seed(seed)
        # Fixed "ground-truth" functions (seed 0 always), independent of the sample seed.
        w = torch.Generator().manual_seed(12345)
        a = torch.randn(self.features, self.joints * self.dim, generator=w)
        c = torch.randn(self.features, self.joints * self.dim, generator=w)
        x = torch.rand(n, self.features, generator=g) * 2 - 1
        mu = 0.5 * torch.tanh(x @ a / math.sqrt(self.features)) + 0.1 * torch.sin(3 * x @ c)
        scale = self.base_scale * (1 + 2 * torch.sigmoid(2 * x @ c / math.sqrt(self.features)))
        eps = self._noise(mu.shape, g)
        shape = (n, self.joints, self.dim)
        return {"x": x, "y": (mu + scale * eps).reshape(shape), "mu": mu.reshape(shape),
                "scale": scale.reshape(shape)}

    def true_nll(self, data: dict[str, Tensor]) -> float:
        """Mean per-joint NLL (nats) of ``data["y"]`` under the true density: the floor."""
        eps = (data["y"] - data["mu"]) / data["scale"]
        if self.noise == "student_t":
            log_p = torch.distributions.StudentT(self.df).log_prob(eps)
        else:
            comp = torch.distributions.Normal(0.0, torch.tensor([4.0, 0.5]))
            log_p = torch.logsumexp(comp.log_prob(eps.unsqueeze(-1)) + torch.tensor([0.2, 0.8]).log(), -1)
        return (data["scale"].log() - log_p).sum(-1).mean().item()

    def _noise(self, shape: torch.Size, g: torch.Generator) -> Tensor:
        if self.noise == "student_t":
            z = torch.randn(shape, generator=g)
            chi2 = 2 * torch._standard_gamma(torch.full(shape, self.df / 2), generator=g)
            return z / torch.sqrt(chi2 / self.df)
        if self.noise == "mixture":
            wide = torch.rand(shape, generator=g) < 0.2
            return torch.randn(shape, generator=g) * torch.where(wide, 4.0, 0.5)
        raise ValueError(f"unknown noise {self.noise!r}")


class ToyRegressor(nn.Module):
    """MLP predicting µ̂ and σ̂ = sigmoid(·) for K joints in D dims, like the pose FC head."""

    def __init__(self, features: int, joints: int, dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.joints, self.dim = joints, dim
        self.body = nn.Sequential(nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.fc = nn.Linear(hidden, joints * dim * 2)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.fc(self.body(x)).reshape(-1, self.joints, 2 * self.dim)
        return out[..., : self.dim], torch.sigmoid(out[..., self.dim :])


def fit(problem: ToyProblem, loss: JointLoss, train: dict[str, Tensor], steps: int = 1500,
        batch: int = 256, lr: float = 1e-3, seed: int = 0, milestones: tuple[int, ...] | None = None,
        flow_warmup_steps: int | None = None) -> ToyRegressor:
    """Adam on model + loss parameters jointly, as the paper trains regressor and flow, with the
    learning rate ×0.1 at each of ``milestones`` (steps; default: at 80% of them, like the step
    schedules of the pose configs). ``flow_warmup_steps``: steps during which RLE's flow term
    gives µ̂ no gradient; by default, as training does, none for the published forms and until the
    first drop for ``rle_calibrated``
    (:meth:`rlepose.config.ExperimentConfig.flow_warmup_epochs`); 0: never."""
    milestones = (int(0.8 * steps),) if milestones is None else tuple(milestones)
    warmup = 0
    if isinstance(loss, FlowLoss) and not isinstance(loss, DLELoss):  # DLE has no Q to train µ̂ meanwhile
        default = min(milestones, default=steps // 2) if isinstance(loss, CalibratedRLELoss) else 0
        warmup = flow_warmup_steps if flow_warmup_steps is not None else default
    torch.manual_seed(seed)
    model = ToyRegressor(problem.features, problem.joints, problem.dim)
    opt = torch.optim.Adam(list(model.parameters()) + list(loss.parameters()), lr=lr)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma=0.1)
    g = torch.Generator().manual_seed(seed)
    n = train["x"].shape[0]
    for step in range(steps):
        loss.set_flow_warmup(step < warmup)
        idx = torch.randint(0, n, (batch,), generator=g)
        mu, sigma = model(train["x"][idx])
        value = loss(mu, sigma, train["y"][idx])
        opt.zero_grad()
        value.backward()
        opt.step()
        sched.step()
    return model


def loss_from_spec(spec: str, dim: int) -> JointLoss:
    """A loss from a name (``rle``, ``laplace_nll``, … as :func:`rlepose.losses.build_loss`) or a
    name with loss-config fields, ``name:key=value:key=value`` — e.g. ``rle:beta=1`` or
    ``rle_calibrated:beta=0`` — built as the training config builds it
    (:class:`rlepose.config.LossConfig`; values parsed as YAML, so this form needs the
    ``train`` extra). The toy's flow warm-up is set by ``flow_warmup_steps``, not per loss."""
    name, *items = spec.split(":")
    if not items:
        return build_loss(name, dim=dim)
    import dataclasses

    from rlepose.config import LossConfig, apply_overrides

    fields = {f.name for f in dataclasses.fields(LossConfig)} - {"name", "flow_warmup_epochs"}
    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"loss spec {spec!r}: {item!r} is not key=value with a key from "
                             f"{', '.join(sorted(fields))} (the warm-up is set by the number of steps, "
                             "--flow-warmup-steps)")
    values = apply_overrides({}, items)  # the config's own KEY=VALUE parser (values as YAML)
    return LossConfig(name=name, **values).build(dim)


@torch.no_grad()
def heldout_nll(loss: JointLoss, mu: Tensor, sigma: Tensor, target: Tensor) -> float | None:
    """Mean per-joint negative log-likelihood (nats) of the model's normalized density
    (:meth:`FlowLoss.log_density` for RLE/DLE); ``None`` for L1/L2, which define no scale."""
    if isinstance(loss, (L1Loss, L2Loss)):
        return None
    if isinstance(loss, FlowLoss):
        return -loss.log_density(mu, sigma, target).mean().item()
    reduction, loss.reduction = loss.reduction, "none"
    try:
        return loss(mu, sigma, target).mean().item()
    finally:
        loss.reduction = reduction


def compare_losses(names: tuple[str, ...] = ("l1", "laplace_nll", "gaussian_nll", "rle"),
                   problem: ToyProblem = ToyProblem(), n_train: int = 8000, n_test: int = 4000,
                   steps: int = 1500, seed: int = 0, flow_warmup_steps: int | None = None) -> list[dict]:
    """Train one regressor per loss (names or specs, :func:`loss_from_spec`) on the same data and
    budget (:func:`fit`: learning rate ×0.1 at 80% of the steps, rle_calibrated's flow warm-up until then
    unless ``flow_warmup_steps``); evaluate on held-out data.

    Returns rows with ``loss``, ``nll`` (nats per joint, None for L1/L2), ``loc_error``
    (mean Euclidean distance of µ̂ to the true location), ``sigma_mean`` (mean σ̂; the true
    noise scale is ~0.03–0.09) and ``true_nll``, the NLL of the true density (the floor).
    """
    train, test = problem.sample(n_train, seed), problem.sample(n_test, seed + 1)
    rows = []
    for name in names:
        loss = loss_from_spec(name, problem.dim)
        model = fit(problem, loss, train, steps=steps, seed=seed, flow_warmup_steps=flow_warmup_steps)
        model.eval()
        with torch.no_grad():
            mu, sigma = model(test["x"])
        rows.append({"loss": name, "nll": heldout_nll(loss, mu, sigma, test["y"]),
                     "loc_error": (mu - test["mu"]).norm(dim=-1).mean().item(),
                     "sigma_mean": sigma.mean().item(), "abs_error_mean": (mu - test["y"]).abs().mean().item()})
    for row in rows:
        row["true_nll"] = problem.true_nll(test)
    return rows


def summarize_seeds(runs: list[dict]) -> list[dict]:
    """Rows of :func:`compare_losses` over several seeds → one row per loss, in first-seen order,
    each metric as ``{"mean", "std", "text"}`` (None where a loss has no value, e.g. L1's NLL)."""
    import statistics

    out = []
    for name in dict.fromkeys(r["loss"] for r in runs):
        mine = [r for r in runs if r["loss"] == name]
        row: dict = {"loss": name, "true_nll": statistics.mean(r["true_nll"] for r in mine)}
        for key in ("nll", "loc_error", "sigma_mean", "abs_error_mean"):
            values = [r[key] for r in mine if r[key] is not None]
            if not values:
                row[key] = None
                continue
            mean = statistics.mean(values)
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            digits = 3 if key == "nll" else 4
            row[key] = {"mean": mean, "std": std, "text": f"{mean:.{digits}f} ± {std:.{digits}f}"}
        out.append(row)
    return out
