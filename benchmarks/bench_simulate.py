"""Time the two finite-width workloads of the simulate issue.

1. fig. 4 experiment: tanh, sb2 = 0.05, --sw2-count values of sw2 in [1, 4], depth --grad-depth,
   width --grad-width, --grad-networks networks each, shared backprop (autograd), batch of 128 digits.
2. forward measurement: width --fwd-width, depth --fwd-depth, --fwd-pairs input pairs (one network).

Full size (the issue's GPU target, < 5 s each):
    python benchmarks/bench_simulate.py --device cuda
Reduced CPU run:
    python benchmarks/bench_simulate.py --grad-depth 60 --grad-width 150 --fwd-width 500 --fwd-depth 60 \
        --fwd-pairs 200
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from deepprop.simulate import simulate_forward, simulate_gradients


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--grad-depth", type=int, default=240)
    p.add_argument("--grad-width", type=int, default=300)
    p.add_argument("--grad-networks", type=int, default=1)
    p.add_argument("--sw2-count", type=int, default=20)
    p.add_argument("--fwd-width", type=int, default=1000)
    p.add_argument("--fwd-depth", type=int, default=300)
    p.add_argument("--fwd-pairs", type=int, default=1000)
    p.add_argument("--repeats", type=int, default=1)
    a = p.parse_args()

    sweep = list(np.linspace(1.0, 4.0, a.sw2_count))
    for _ in range(a.repeats):
        _sync(a.device)
        t = time.perf_counter()
        res = simulate_gradients("tanh", sweep, 0.05, width=a.grad_width, depth=a.grad_depth,
                                 networks=a.grad_networks, device=a.device, dtype="float32")
        _sync(a.device)
        t_grad = time.perf_counter() - t
        ok = sum(pt.finite for pt in res.points)
        print(f"gradients: L={a.grad_depth} N={a.grad_width} sw2 values={a.sw2_count} "
              f"networks={a.grad_networks} device={a.device}: {t_grad:.2f} s ({ok} finite)")

        _sync(a.device)
        t = time.perf_counter()
        simulate_forward("tanh", 2.5, 0.05, width=a.fwd_width, depth=a.fwd_depth, networks=1,
                         pairs=a.fwd_pairs, device=a.device, dtype="float32")
        _sync(a.device)
        t_fwd = time.perf_counter() - t
        print(f"forward: N={a.fwd_width} L={a.fwd_depth} pairs={a.fwd_pairs} device={a.device}: {t_fwd:.2f} s")


if __name__ == "__main__":
    main()
