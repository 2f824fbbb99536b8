"""Naive per-network PyTorch loop vs the batched sweep engine, on the same networks.

Networks: ``--n-sw2`` values of sigma_w2 in [1, 4] at each of ``--depths``; width ``--width``; batch
``--batch-size``; MNIST-shaped random inputs (784 features, 10 classes); SGD. The naive loop builds one
nn.Sequential and one torch.optim.SGD per network and trains them one after the other, as most research
code does; the engine trains all networks of one depth as one batched ensemble. Both run ``--steps``
steps per network (the naive loop ``--naive-steps`` if given, to save time: the figure of merit is a rate).

Prints network-steps/s of each, their ratio, and the engine's achieved matmul FLOP/s
(3 x 2 B fan_in fan_out per layer and step). ``--fig5a`` also times a fig. 5a-size grid (30 depths 10..300
x 30 sigma_w2, 200 steps) with the engine. Runs unchanged on a GPU with ``--device cuda``.

    python benchmarks/bench_sweep.py --device cpu --width 64 --depths 10,20 --steps 20
    python benchmarks/bench_sweep.py --device cuda --fig5a
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from deepprop.activations import get_activation
from deepprop.sweep.ensemble import NetSpec, TrainSettings, batch_indices, flops_per_step, train_ensemble


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def naive(specs, settings, x, y, n_classes, steps) -> float:
    """Seconds for training every network alone with nn.Sequential + torch.optim.SGD."""
    phi = get_activation(settings.activation)
    dev = x.device
    t0 = time.perf_counter()
    for s in specs:
        torch.manual_seed(s.init_seed)
        layers, fan_in = [], x.shape[1]
        for _ in range(settings.depth):
            lin = torch.nn.Linear(fan_in, settings.width)
            torch.nn.init.normal_(lin.weight, 0.0, math.sqrt(s.sigma_w2 / fan_in))
            torch.nn.init.normal_(lin.bias, 0.0, math.sqrt(s.sigma_b2))
            layers += [lin, phi.torch_module()]
            fan_in = settings.width
        layers.append(torch.nn.Linear(fan_in, n_classes))
        model = torch.nn.Sequential(*layers).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=s.lr)
        idx = torch.from_numpy(batch_indices(s.seed, len(y), steps, settings.batch_size)).to(dev)
        for step in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(x[idx[step]]), y[idx[step]])
            loss.backward()
            opt.step()
        _sync(dev)
    return time.perf_counter() - t0


def engine(specs, settings, x, y, n_classes) -> float:
    _sync(x.device)
    t0 = time.perf_counter()
    train_ensemble(specs, settings, x, y, x[:1000], y[:1000], n_classes)
    _sync(x.device)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=300)
    p.add_argument("--depths", default="10,50,100,200")
    p.add_argument("--n-sw2", type=int, default=16)
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--naive-steps", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--fig5a", action="store_true", help="also time a fig. 5a-size grid with the engine")
    p.add_argument("--skip-naive", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.n_train, 784, generator=g).to(dev)
    y = torch.randint(0, 10, (a.n_train,), generator=g).to(dev)
    depths = [int(d) for d in a.depths.split(",")]
    sw2 = np.linspace(1.0, 4.0, a.n_sw2)
    naive_steps = a.naive_steps or a.steps
    tot_naive = tot_engine = 0.0
    ns_naive = ns_engine = 0
    flops = 0.0
    print(
        f"device={dev} ({torch.cuda.get_device_name(dev) if dev.type == 'cuda' else 'cpu'}), "
        f"threads={torch.get_num_threads()}, width={a.width}, batch={a.batch_size}, precision={a.precision}"
    )
    # Warm up both paths once (kernel selection, allocator, first-call overheads) outside the timings.
    warm = TrainSettings(depth=depths[0], width=a.width, steps=2, batch_size=a.batch_size, eval_train=100,
                         eval_test=100, precision=a.precision)
    warm_specs = [NetSpec(float(s), 0.05, 1e-3, 0, i, i) for i, s in enumerate(sw2[:2])]
    engine(warm_specs, warm, x, y, 10)
    if not a.skip_naive:
        naive(warm_specs, warm, x, y, 10, 2)
    for L in depths:
        st = TrainSettings(
            depth=L,
            width=a.width,
            steps=a.steps,
            batch_size=a.batch_size,
            eval_train=1000,
            eval_test=1000,
            precision=a.precision,
        )
        specs = [NetSpec(float(s), 0.05, 1e-3, 0, 1000 * L + i, i) for i, s in enumerate(sw2)]
        te = engine(specs, st, x, y, 10)
        tot_engine += te
        ns_engine += len(specs) * a.steps
        flops += len(specs) * a.steps * flops_per_step(st, 784, 10)
        line = f"depth {L:4d}: engine {len(specs) * a.steps / te:10.1f} net-steps/s"
        if not a.skip_naive:
            tn = naive(specs, st, x, y, 10, naive_steps)
            tot_naive += tn
            ns_naive += len(specs) * naive_steps
            ratio = (a.steps / te) / (naive_steps / tn)
            line += f", naive {len(specs) * naive_steps / tn:8.1f} net-steps/s, ratio {ratio:6.1f}x"
        print(line, flush=True)
    r_e = ns_engine / tot_engine
    print(
        f"engine: {r_e:.1f} network-steps/s, {flops / tot_engine / 1e9:.2f} GFLOP/s achieved (matmul FLOPs)"
    )
    if not a.skip_naive:
        r_n = ns_naive / tot_naive
        print(f"naive:  {r_n:.1f} network-steps/s;  ratio engine/naive = {r_e / r_n:.1f}x")
    if a.fig5a:
        t0 = time.perf_counter()
        total_flops = 0.0
        for L in np.linspace(10, 300, 30).astype(int):
            st = TrainSettings(
                depth=int(L),
                width=a.width,
                steps=200,
                batch_size=a.batch_size,
                eval_train=1000,
                eval_test=1000,
                precision=a.precision,
            )
            lr = 1e-3 if L < 200 else 1e-4
            grid = np.linspace(1, 4, 30)
            specs = [NetSpec(float(s), 0.05, lr, 0, 7 * int(L) + i, i) for i, s in enumerate(grid)]
            engine(specs, st, x, y, 10)
            total_flops += len(specs) * 200 * flops_per_step(st, 784, 10)
        wall = time.perf_counter() - t0
        print(f"fig5a grid (30 x 30, 200 steps): {wall:.1f} s, {total_flops / wall / 1e12:.2f} TFLOP/s")


if __name__ == "__main__":
    main()
