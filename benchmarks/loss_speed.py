"""Forward+backward time of each loss (ratio to L1) and RealNVP cost per Table 11 config.

    python benchmarks/loss_speed.py [--repeats 200] [--out benchmarks/results/loss_speed.json]

Times are medians over repeats on this machine's CPU; only ratios within one run are meant
to be compared. Flow FLOPs are counted by torch.utils.flop_counter (2 FLOPs per
multiply-add) for one image's 17 joints, the unit of the paper's Table 11.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from rlepose.files import write_json
from rlepose.flows import RealNVP
from rlepose.losses import LOSS_NAMES, build_loss

PAPER_TABLE11 = {(3, 64): (1.8e6, 53.8e3), (3, 128): (6.9e6, 205.8e3), (3, 256): (27.3e6, 804.8e3),
                 (5, 32): (1.3e6, 40.0e3), (5, 64): (5.2e6, 153.6e3)}


def time_loss(name: str, dim: int, repeats: int, n: int = 64, k: int = 17) -> float:
    torch.manual_seed(0)
    loss = build_loss(name, dim=dim)
    mu = torch.rand(n, k, dim, requires_grad=True)
    sigma = torch.rand(n, k, dim).mul(0.3).add(0.01).requires_grad_(True)
    target = mu.detach() + 0.05 * torch.randn(n, k, dim)
    samples = []
    for i in range(repeats + 10):
        t0 = time.perf_counter()
        loss(mu, sigma, target).backward()
        if i >= 10:  # warm-up
            samples.append(time.perf_counter() - t0)
        mu.grad = sigma.grad = None
        loss.zero_grad()
    return statistics.median(samples)


def flow_cost(layers: int, width: int, joints: int = 17) -> tuple[int, int]:
    flow = RealNVP(2, hidden_layers=layers, hidden_features=width)
    counter = FlopCounterMode(display=False)
    with counter:
        flow.log_prob(torch.zeros(joints, 2))
    return counter.get_total_flops(), sum(p.numel() for p in flow.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--out", default="benchmarks/results/loss_speed.json")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))

    speed = []
    for dim in (2, 3):
        base = time_loss("l1", dim, args.repeats)
        for name in LOSS_NAMES:
            t = base if name == "l1" else time_loss(name, dim, args.repeats)
            speed.append({"loss": name, "D": dim, "ms": 1e3 * t, "ratio_to_l1": t / base})
    print(f"Loss forward+backward, N=64 K=17, median of {args.repeats} (CPU, {torch.get_num_threads()} threads)")
    print(f"{'loss':>13} {'D':>2} {'ms':>8} {'× L1':>7}")
    for r in speed:
        print(f"{r['loss']:>13} {r['D']:>2} {r['ms']:8.3f} {r['ratio_to_l1']:7.1f}")

    flows = []
    for (layers, width), (paper_flops, paper_params) in PAPER_TABLE11.items():
        flops, params = flow_cost(layers, width)
        flows.append({"config": f"{layers}x{width}", "flops": flops, "params": params,
                      "paper_flops": paper_flops, "paper_params": paper_params})
    print("\nRealNVP cost for one image (17 joints), vs. the paper's Table 11")
    print(f"{'config':>7} {'FLOPs':>8} {'paper':>8} {'params':>9} {'paper':>9}")
    for r in flows:
        print(f"{r['config']:>7} {r['flops'] / 1e6:7.2f}M {r['paper_flops'] / 1e6:7.1f}M "
              f"{r['params'] / 1e3:8.1f}K {r['paper_params'] / 1e3:8.1f}K")

    out = write_json(args.out, {"device": "cpu", "threads": torch.get_num_threads(), "loss_speed": speed,
                                "flow_cost": flows}, indent=2)
    print(f"\nwritten to {out}")


if __name__ == "__main__":
    main()
