"""The flow losses' default path: one compiled graph (rlepose.losses.compiled), checked against
the eager loss, for its operator count, its recompilations and its fallback.

The test suite runs losses eagerly (conftest sets RLEPOSE_COMPILE_LOSS=0); these tests ask for
the compiled path, explicitly or by removing that setting."""
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from torch._dynamo.utils import counters

from rlepose.config import LossConfig
from rlepose.flows import RealNVP
from rlepose.losses import (CalibratedRLELoss, DLELoss, L1Loss, MMPoseRLELoss, PaperRLELoss, RLELoss, build_loss,
                            compiled)
from rlepose.losses.compiled import ENV_VAR, CompileFallbackWarning

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from common import top_level_aten_ops  # noqa: E402


def _inputs(n: int, k: int, d: int = 2, seed: int = 0):
    """Random µ̂, σ̂ (requiring gradients), labels, and per-coordinate weights with whole joints
    unlabelled and joints labelled in some coordinates only."""
    g = torch.Generator().manual_seed(seed)
    mu = (torch.rand(n, k, d, generator=g) - 0.5).requires_grad_()
    sigma = (torch.rand(n, k, d, generator=g) * 0.3 + 0.01).requires_grad_()
    target = mu.detach() + 0.1 * torch.randn(n, k, d, generator=g)
    weight = torch.rand(n, k, 1, generator=g).gt(0.2).float() * torch.rand(n, k, d, generator=g).gt(0.1).float()
    return mu, sigma, target, weight


def _value_and_grads(loss, mu, sigma, target, weight):
    value = loss(mu, sigma, target, weight)
    return value, torch.autograd.grad(value, [mu, sigma, *loss.parameters()])


def test_flow_losses_compile_by_default_and_can_opt_out(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert RLELoss().compiles() and DLELoss().compiles() and CalibratedRLELoss().compiles()
    assert build_loss("rle_mmpose").compiles() and LossConfig().build(2).compiles()
    assert not RLELoss(compile=False).compiles() and not LossConfig(compile=False).build(2).compiles()
    assert not L1Loss().compiles() and not LossConfig(name="laplace_nll").build(2).compiles()
    for off in ("0", "false", "off"):
        monkeypatch.setenv(ENV_VAR, off)
        assert not RLELoss().compiles() and RLELoss(compile=True).compiles()
    # the opt-out keeps the parameters, and so the state dict, as they are
    assert list(RLELoss(compile=False).state_dict()) == list(RLELoss().state_dict())


def test_a_failed_compilation_warns_once_and_runs_the_loss_eagerly(monkeypatch):
    """Whatever breaks inside the compiled call, the loss returns the eager value and gradients,
    warns once, and later calls run eagerly without compiling; an error of the inputs still
    raises as it does eagerly, and does not switch compilation off."""
    calls = []

    def broken(loss, *args):
        calls.append(1)
        if args[0].shape[-1] != loss.dim:
            return loss.value(*args)  # what the compiled graph does with bad inputs: the loss's own error
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    monkeypatch.setattr(compiled, "_compiled", lambda: broken)
    monkeypatch.setattr(compiled, "_failed", {})
    monkeypatch.setattr(compiled, "_warned", set())
    loss = RLELoss(flow=RealNVP(2, hidden_features=16), compile=True)
    with pytest.raises(ValueError, match="D=3"):
        loss(*_inputs(4, 3, d=3)[:3])
    assert compiled._failed == {}
    inputs = _inputs(8, 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value, grads = _value_and_grads(loss, *inputs)
        _value_and_grads(loss, *_inputs(6, 5, seed=1))
    fallbacks = [w for w in caught if issubclass(w.category, CompileFallbackWarning)]
    assert len(fallbacks) == 1 and "InvalidCxxCompiler" in str(fallbacks[0].message)
    assert len(calls) == 2  # the bad-input call and the first good one; the third ran eagerly
    loss.compile_graph = False
    ref, ref_grads = _value_and_grads(loss, *inputs)
    assert value.item() == ref.item() and all(torch.equal(a, b) for a, b in zip(grads, ref_grads))


def test_the_compiled_call_keeps_many_graphs_and_compiles_the_backward_with_the_forward(monkeypatch):
    """During the compiled call TorchDynamo may keep 64 graphs of it (a process training many
    losses) and AOTAutograd compiles the backward at once; both settings are restored after."""
    import torch._functorch.config as functorch_config

    seen = []

    def record(loss, *args):
        seen.append((torch._dynamo.config.recompile_limit, functorch_config.force_non_lazy_backward_lowering))
        return loss.value(*args)

    monkeypatch.setattr(compiled, "_compiled", lambda: record)
    monkeypatch.setattr(compiled, "_failed", {})
    before = (torch._dynamo.config.recompile_limit, functorch_config.force_non_lazy_backward_lowering)
    RLELoss(flow=RealNVP(2, hidden_features=8), compile=True)(*_inputs(4, 3)[:3])
    assert seen == [(max(64, before[0]), True)]
    assert (torch._dynamo.config.recompile_limit, functorch_config.force_non_lazy_backward_lowering) == before


_NO_COMPILER = """
import warnings, torch
from rlepose.losses import RLELoss
from rlepose.losses.compiled import CompileFallbackWarning
loss = RLELoss()
mu = torch.rand(8, 17, 2, requires_grad=True)
sigma, target = torch.rand(8, 17, 2) * 0.2 + 0.05, torch.rand(8, 17, 2)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    values = [loss(mu, sigma, target) for _ in range(3)]
    values[0].backward()
loss.compile_graph = False
assert all(v.item() == loss(mu, sigma, target).item() for v in values)
print([str(w.message) for w in caught if issubclass(w.category, CompileFallbackWarning)])
"""


def test_without_a_cpp_compiler_the_default_loss_warns_once_and_runs(tmp_path):
    """The CPU needs a C++ compiler to compile: without one (CXX names nothing), the default
    loss runs eagerly with one clear warning, never an error."""
    env = {k: v for k, v in __import__("os").environ.items() if k != ENV_VAR}
    env.update(CXX=str(tmp_path / "no-such-g++"), TORCHINDUCTOR_CACHE_DIR=str(tmp_path / "inductor"))
    proc = subprocess.run([sys.executable, "-c", _NO_COMPILER], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    messages = eval(proc.stdout.strip().splitlines()[-1])
    assert len(messages) == 1 and "no C++ compiler" in messages[0] and "compile=False" in messages[0]


@pytest.mark.slow
@pytest.mark.parametrize("cls,dim,layers", [(RLELoss, 2, 6), (RLELoss, 3, 6), (PaperRLELoss, 3, 2),
                                            (MMPoseRLELoss, 2, 2), (CalibratedRLELoss, 3, 2), (DLELoss, 2, 2)],
                         ids=["rle-2d", "rle-3d", "rle_paper-3d", "rle_mmpose", "rle_calibrated-3d", "dle"])
def test_the_compiled_loss_equals_the_eager_loss(cls, dim, layers):
    """Value and every gradient (µ̂, σ̂, each flow parameter) equal the eager loss to 1e-5 in
    float32, with joint weights and joints labelled in some coordinates only; RLELoss with the
    paper's flow, the other forms with a shorter one (compiling costs time, not coverage)."""
    torch.manual_seed(0)
    loss = cls(dim=dim, flow=cls.default_flow(dim) if layers == 6 else RealNVP(dim, num_layers=layers),
               compile=True)
    if cls is CalibratedRLELoss:  # its flow starts as the identity: make it a real one
        with torch.no_grad():
            for p in loss.parameters():
                p.normal_(0, 0.1)
    torch._dynamo.reset()
    counters.clear()
    inputs = _inputs(16, 17, dim)
    value, grads = _value_and_grads(loss, *inputs)
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"], dict(counters["graph_break"])
    loss.compile_graph = False
    ref, ref_grads = _value_and_grads(loss, *inputs)
    assert value.item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-6)
    for got, want in zip(grads, ref_grads):
        assert torch.allclose(got, want, rtol=1e-5, atol=1e-5 * want.abs().max().item())


@pytest.mark.slow
def test_batch_and_joint_counts_compile_at_most_twice_and_evaluation_not_at_all():
    torch._dynamo.reset()
    counters.clear()
    loss = RLELoss(compile=True)
    for n, k in [(32, 17), (64, 17), (37, 17), (256, 17), (64, 16), (37, 16), (256, 16)]:
        value, grads = _value_and_grads(loss, *_inputs(n, k))
        assert torch.isfinite(value) and all(torch.isfinite(g).all() for g in grads)
    graphs = counters["stats"]["unique_graphs"]
    assert 1 <= graphs <= 2
    with torch.no_grad():  # evaluation: nothing to differentiate, nothing compiled
        loss(*_inputs(48, 17)[:3])
    loss(*_inputs(1, 17)[:3])  # a batch of one would specialize the graph: eager
    assert counters["stats"]["unique_graphs"] == graphs


@pytest.mark.slow
def test_the_compiled_loss_runs_in_few_operators():
    """The compiled RLE loss's forward + backward runs at most 40 top-level ATen operators
    (the eager loss: hundreds), on a second call."""
    loss = RLELoss(compile=True)
    mu, sigma, target, weight = _inputs(64, 17)

    def step():
        loss(mu, sigma, target, weight).backward()

    step()
    assert top_level_aten_ops(step) <= 40
    loss.compile_graph = False
    assert top_level_aten_ops(step) > 200


@pytest.mark.slow
def test_training_on_the_default_path(tmp_path, fixtures, monkeypatch):
    """``rlepose train`` with the default loss settings trains through the compiled loss: a few
    steps on the COCO fixture photos, every step compiled (no fallback), finite losses, the
    flow's weights updated under their official names."""
    import lightning as L

    import rlepose.losses.base as base
    from rlepose.config import config_from_dict
    from rlepose.training.run import train

    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.setattr(compiled, "_failed", {})
    calls = []

    def spy(*args):
        calls.append(torch.is_grad_enabled())
        return compiled.compiled_value(*args)

    monkeypatch.setattr(base, "compiled_value", spy)
    initial = {}

    class Initial(L.Callback):
        def on_train_start(self, trainer, module):
            initial.update({k: v.clone() for k, v in module.loss.flow.state_dict().items()})

    cfg = config_from_dict({
        "name": "compiled", "model": {"backbone": "resnet18", "head": "regression"},
        "data": {"format": "coco", "root": str(fixtures / "coco"), "train_ann": "test_coco.json", "train_images": ".",
                 "val_ann": "test_coco.json", "val_images": ".", "batch_size": 4, "num_workers": 0},
        "transform": {"input_size": [64, 48]},
        "train": {"epochs": 1, "val_every": 1, "out_dir": str(tmp_path / "runs")}})
    module, trainer = train(cfg, callbacks=[Initial()], enable_progress_bar=False)
    assert trainer.global_step >= 2 and module.nonfinite_batches == 0
    assert len(calls) == trainer.global_step and all(calls) and compiled._failed == {}
    trained = module.loss.flow.state_dict()
    assert list(trained) == list(initial) and "s.0.0.weight" in trained  # the official names
    assert all(not torch.equal(trained[k], initial[k]) for k in trained if k != "mask")
