"""RealNVP, the paper's flow (appendix A), for D ≥ 2.

RealNVP layout (appendix A, Eq. 12): ``K`` affine coupling layers with alternating binary
masks. In layer ``k`` the kept coordinates (``mask_k = 1``) pass unchanged and condition the
others, which are scaled by ``exp(s_k(x_kept))`` and shifted by ``t_k(x_kept)``. Each of ``s_k``
and ``t_k`` is an MLP of ``Lfc`` linear layers of width ``Nn`` with LeakyReLU in between
(``Lfc`` counts every linear layer, which reproduces the parameter counts of Table 11:
3×64 → 53.8K). ``s_k`` ends in ``tanh`` so that each layer scales by at most ``e``.

The weights of ``s_k`` and ``t_k`` are stored stacked (one tensor per linear layer for all
couplings, s and t side by side), so that a coupling runs as one batched matrix product per
linear layer, and :meth:`RealNVP.log_prob` runs the whole stack with a hand-written backward
pass (:class:`_InverseStack`): a loss evaluates the flow on every joint of every sample, and
this keeps its cost to the matrix products. The state dict still uses the official code's names
(``mask``, ``s.{k}.{j}.weight``, ``t.{k}.{j}.bias``, full width), so its weights load unchanged.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["alternating_masks", "RealNVP"]


def alternating_masks(dim: int, num_layers: int) -> Tensor:
    """Binary masks ``(num_layers, dim)``: even layers keep the last ``dim // 2`` coordinates
    fixed (``[0, 1]`` for D=2, ``[0, 0, 1]`` for D=3), odd layers the complement."""
    if dim < 2:
        raise ValueError("coupling flows need dim >= 2 (nothing to condition on in 1-D): for one-dimensional "
                         "targets use rlepose.flows.SplineFlow1D, the losses' default flow there")
    even = torch.zeros(dim)
    even[dim - dim // 2 :] = 1.0
    return torch.stack([even if k % 2 == 0 else 1.0 - even for k in range(num_layers)])


_SLOPE = 0.01  # LeakyReLU's negative slope (PyTorch's default, as in the official code)


def _bmm(a: Tensor, b: Tensor, bias: Tensor | None = None) -> Tensor:
    """``a @ b (+ bias)`` for batches (B, n, k) @ (B, k, m) (+ (B, 1, m)). BLAS is slow when k
    or m is 1 or 2 (a coupling's input or output width): a small k becomes a sum of broadcast
    products, a small m the transposed product."""
    k, m = a.shape[-1], b.shape[-1]
    if k <= 2:
        out = a[..., :1] * b[..., :1, :] if bias is None else torch.addcmul(bias, a[..., :1], b[..., :1, :])
        for i in range(1, k):
            out = torch.addcmul(out, a[..., i : i + 1], b[..., i : i + 1, :])
        return out
    if m <= 2:
        out = torch.bmm(b.transpose(1, 2), a.transpose(1, 2)).transpose(1, 2)
        return out if bias is None else out + bias
    return torch.bmm(a, b) if bias is None else torch.baddbmm(bias, a, b)


def _coupling_params(weights, biases, k: int, keep: list[int], change: list[int]) -> tuple[list, list]:
    """Coupling k's s and t weights (2, out, in) and biases (2, out) per linear layer: the first
    layer's columns of the kept coordinates, the last layer's rows of the changed ones."""
    w, b = [wj[k] for wj in weights], [bj[k] for bj in biases]
    w[0], w[-1], b[-1] = w[0][:, :, keep], w[-1][:, change], b[-1][:, change]
    return w, b


def _pair_forward(x_kept: Tensor, weights: list[Tensor], biases: list[Tensor]) -> list[Tensor]:
    """The s and t networks of one coupling, batched: ``x_kept`` (M, d_in) → the input of every
    linear layer and, last, the output (index 0 of the pair is s before its tanh): (2, M, ·)
    each, with ``weights[j]`` (2, out, in) and ``biases[j]`` (2, out)."""
    acts = [x_kept.unsqueeze(0).expand(2, -1, -1)]
    for j, (w, b) in enumerate(zip(weights, biases)):
        out = _bmm(acts[-1], w.transpose(1, 2), b.unsqueeze(1))
        acts.append(torch.nn.functional.leaky_relu(out, _SLOPE) if j < len(weights) - 1 else out)
    return acts


class _InverseStack(torch.autograd.Function):
    """``z = f⁻¹(x)`` and ``log|det ∂z/∂x|`` of the whole coupling stack, with the backward pass
    written out: per coupling a handful of batched matrix products, each in the shape that BLAS
    computes fast (weight gradients sum over the M rows as their inner dimension)."""

    @staticmethod
    def forward(ctx, x, keep, change, *params):
        weights, biases = params[0::2], params[1::2]  # per linear layer j: (L, 2, out, in), (L, 2, out)
        z, log_det = x, x.new_zeros(x.shape[0])
        saved = []
        for k in reversed(range(len(keep))):
            w, b = _coupling_params(weights, biases, k, keep[k], change[k])
            acts = _pair_forward(z[:, keep[k]], w, b)
            s, t = torch.tanh(acts[-1][0]), acts[-1][1]
            e = torch.exp(-s)
            z_change = z[:, change[k]]
            if ctx is not None:
                saved.append((z_change, acts[:-1], s, t, e, w))
            z = z.clone()
            z[:, change[k]] = (z_change - t) * e
            log_det = log_det - s.sum(1)
        if ctx is not None:
            ctx.keep, ctx.change, ctx.saved = keep, change, saved[::-1]  # saved[k] belongs to coupling k
            ctx.shapes = [p.shape for p in params]
        return z, log_det

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_z, g_log_det):
        keep, change = ctx.keep, ctx.change
        grads = [g_z.new_zeros(shape) for shape in ctx.shapes]
        g_weights, g_biases = grads[0::2], grads[1::2]
        g_z = g_z.clone()
        last = len(g_weights) - 1
        for k in range(len(keep)):  # the couplings were applied last to first: undo first to last
            z_change, acts, s, t, e, w = ctx.saved[k]
            g_new = g_z[:, change[k]]
            g_t = -g_new * e
            g_s = g_t * (z_change - t) - g_log_det.unsqueeze(1)
            g = torch.stack((g_s * (1 - s * s), g_t))  # (2, M, d_out), s through its tanh
            for j in reversed(range(len(w))):
                g_w = _bmm(g.transpose(1, 2), acts[j])
                rows = change[k] if j == last else slice(None)
                cols = keep[k] if j == 0 else slice(None)
                g_weights[j][k][:, rows, cols] = g_w
                g_biases[j][k][:, rows] = g.sum(1)
                if j:
                    g = torch.ops.aten.leaky_relu_backward(_bmm(g, w[j]), acts[j], _SLOPE, True)
            g_kept = _bmm(g, w[0]).sum(0)  # (M, d_in)
            g_z[:, change[k]] = g_new * e
            g_z[:, keep[k]] += g_kept
        return (g_z, None, None, *grads)


class RealNVP(nn.Module):
    """RealNVP density on ``R^dim`` with a Gaussian base.

    Args:
        dim: D, the dimension of one joint's error vector (2 or 3).
        num_layers: K coupling layers (paper: 6).
        hidden_layers: Lfc, linear layers per s/t network (paper default 3).
        hidden_features: Nn, their width (paper default 64).
        base_std: standard deviation of the Gaussian base (1 in the paper). The density is
            ``G(x) = G₁(x / base_std) / base_std^D`` with ``G₁`` the unit-base flow, so a wide
            base makes G nearly flat on the scale of Q.
        zero_init: zero the last linear layer of every s/t network, so that the flow starts as
            the identity map and ``G = N(0, base_std² I)`` exactly. Weights loaded afterwards
            (checkpoints) overwrite it.

    Parameters: ``weight{j}`` (K, 2, out, in) and ``bias{j}`` (K, 2, out) for linear layer j of
    the s (index 0) and t (index 1) networks of every coupling; the state dict names them as the
    official code does (see the module docstring).
    """

    def __init__(self, dim: int = 2, num_layers: int = 6, hidden_layers: int = 3,
                 hidden_features: int = 64, base_std: float = 1.0, zero_init: bool = False) -> None:
        super().__init__()
        if base_std <= 0:
            raise ValueError(f"base_std must be positive, got {base_std}")
        if hidden_layers < 2:
            raise ValueError(f"a coupling network needs at least 2 linear layers, got {hidden_layers}")
        self.dim, self.num_layers, self.hidden_layers = dim, num_layers, hidden_layers
        self.base_std = float(base_std)
        self.register_buffer("mask", alternating_masks(dim, num_layers))
        widths = [dim] + [hidden_features] * (hidden_layers - 1) + [dim]
        for j, (w_in, w_out) in enumerate(zip(widths[:-1], widths[1:])):
            weight = torch.empty(num_layers, 2, w_out, w_in)
            bias = torch.empty(num_layers, 2, w_out)
            for k in range(num_layers):
                for i in range(2):  # nn.Linear's initialization, per network
                    layer = nn.Linear(w_in, w_out)
                    weight[k, i], bias[k, i] = layer.weight.detach(), layer.bias.detach()
            if zero_init and j == hidden_layers - 1:
                weight.zero_()
                bias.zero_()
            self.register_parameter(f"weight{j}", nn.Parameter(weight))
            self.register_parameter(f"bias{j}", nn.Parameter(bias))
        self._index_masks()
        self.register_state_dict_post_hook(_to_official_names)
        self.register_load_state_dict_pre_hook(_from_official_names)
        self.register_load_state_dict_post_hook(_reindex)

    def _index_masks(self) -> None:
        """Kept and changed coordinate indices of every coupling, from ``mask``."""
        self._keep = [torch.nonzero(m > 0).flatten().tolist() for m in self.mask]
        self._change = [torch.nonzero(m <= 0).flatten().tolist() for m in self.mask]

    def _params(self) -> list[Tensor]:
        return [p for j in range(self.hidden_layers) for p in (getattr(self, f"weight{j}"), getattr(self, f"bias{j}"))]

    def _st(self, k: int, x: Tensor) -> tuple[Tensor, Tensor]:
        """Log-scale and shift (M, d_change) of coupling k from the full input x (M, D)."""
        params = self._params()
        w, b = _coupling_params(params[0::2], params[1::2], k, self._keep[k], self._change[k])
        out = _pair_forward(x[:, self._keep[k]], w, b)[-1]
        return torch.tanh(out[0]), out[1]

    def forward_transform(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Base → data: ``x = f(z)``; returns ``(x, log|det ∂x/∂z|)``, shapes (M,D), (M,)."""
        log_det = z.new_zeros(z.shape[0])
        x = z
        for k in range(self.num_layers):
            s, t = self._st(k, x)
            changed = x[:, self._change[k]] * torch.exp(s) + t
            x = x.clone()
            x[:, self._change[k]] = changed
            log_det = log_det + s.sum(dim=1)
        return x, log_det

    def inverse_transform(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Data → base: ``z = f⁻¹(x)``; returns ``(z, log|det ∂z/∂x|)``, shapes (M,D), (M,)."""
        params = self._params()
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in params)):
            return _InverseStack.apply(x, self._keep, self._change, *params)
        return _InverseStack.forward(None, x, self._keep, self._change, *params)  # nothing kept for a backward

    def log_prob(self, x: Tensor) -> Tensor:
        """Log-density at ``x`` (M, D) → (M,), in nats."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"RealNVP(dim={self.dim}).log_prob expects (M, {self.dim}), got {tuple(x.shape)}")
        # the flow runs in its parameters' precision, also under autocast (its sums of squares
        # and exponentials are the numerically delicate part of the loss)
        with torch.autocast(x.device.type, enabled=False):
            z, log_det = self.inverse_transform(x.to(self.weight0.dtype) / self.base_std)
        base = -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return base + log_det - self.dim * math.log(self.base_std)

    def rsample_and_log_prob(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` reparameterized samples (n, D) and their log-densities (n,): differentiable
        in the flow's parameters (used to integrate against Gφ inside a loss)."""
        z = torch.randn(n, self.dim, device=self.mask.device, dtype=self.mask.dtype)
        x, log_det = self.forward_transform(z)
        base = -0.5 * (z**2).sum(dim=1) - 0.5 * self.dim * math.log(2 * math.pi)
        return x * self.base_std, base - log_det - self.dim * math.log(self.base_std)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` samples (n, D), e.g. to plot the learned residual density."""
        z = torch.randn(n, self.dim, generator=generator, device=self.mask.device, dtype=self.mask.dtype)
        return self.forward_transform(z)[0] * self.base_std


def _reindex(module: RealNVP, incompatible_keys) -> None:
    module._index_masks()  # a loaded mask may differ from the default


def _official_keys(module: RealNVP, prefix: str) -> dict[str, tuple[str, int, int, int]]:
    """``{official key: (our key, coupling k, network 0 = s / 1 = t, layer j)}``; the Linear
    layers of an s/t ``nn.Sequential`` sit at indices 0, 2, 4, … (LeakyReLU between)."""
    out = {}
    for i, net in enumerate("st"):
        for k in range(module.num_layers):
            for j in range(module.hidden_layers):
                for kind in ("weight", "bias"):
                    out[f"{prefix}{net}.{k}.{2 * j}.{kind}"] = (f"{prefix}{kind}{j}", k, i, j)
    return out


def _to_official_names(module: RealNVP, state_dict: dict, prefix: str, local_metadata) -> None:
    for key, (ours, k, i, _) in _official_keys(module, prefix).items():
        state_dict[key] = state_dict[ours][k, i]
    for j in range(module.hidden_layers):
        for kind in ("weight", "bias"):
            del state_dict[f"{prefix}{kind}{j}"]


def _from_official_names(module: RealNVP, state_dict: dict, prefix: str, local_metadata, strict, missing_keys,
                         unexpected_keys, error_msgs) -> None:
    keys = _official_keys(module, prefix)
    if not any(key in state_dict for key in keys):
        return  # our own stacked names, or nothing for this module
    stacks: dict[str, Tensor] = {}
    for key, (ours, k, i, _) in keys.items():
        if key not in state_dict:
            missing_keys.append(key)
            continue
        value = state_dict.pop(key)
        stack = stacks.setdefault(ours, getattr(module, ours[len(prefix):]).detach().clone())
        if stack[k, i].shape != value.shape:
            error_msgs.append(f"size mismatch for {key}: {tuple(value.shape)} in the checkpoint, "
                              f"{tuple(stack[k, i].shape)} in RealNVP(dim={module.dim})")
            continue
        stack[k, i] = value
    state_dict.update(stacks)
