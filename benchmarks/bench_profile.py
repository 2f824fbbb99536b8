"""Time ``deepprop.profile`` on the issue's two workloads, against a simple peer, in the same run.

Workloads (speed goal: each under 30 s on the 2-core CPU with the defaults inits=8, pairs=4):

* residual MLP: 50 blocks ``x + relu(fc(x))`` of width 256 (input and head Linear layers), input (256,);
* vanilla CNN: 30 layers Conv2d(3x3, 64 channels) + ReLU, global average pooling, Linear head, input 3x32x32.

Each model is profiled as PyTorch initialises it and after ``init_``. Reported per workload: the whole
``profile()`` call (median of ``--repeat`` runs after one warm-up, wall and CPU time, and the warm-up itself: the first
call of a process), its parts (tracing, theory, measurement), and, for the init_ model, the largest deviation of the
measured q^l and c^l from the exact predictions (the issue's 10 % criterion at width / channels 256 / 64).

Peer, same run: the obvious implementation of the same measurement — forward hooks on the leaf modules of the
real model, run on dual tensors of ``torch.autograd.forward_ad`` (primal and tangent of every module output),
with the same inits x pairs batches; it sees only module outputs (no functional ops, no theory).

    python benchmarks/bench_profile.py                 # both workloads, 3 repeats
    python benchmarks/bench_profile.py --only cnn --repeat 1
    python benchmarks/bench_profile.py --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch
import torch.autograd.forward_ad as fwAD

from deepprop.integrations.graph import trace_model
from deepprop.integrations.measure import gaussian_pairs, measure
from deepprop.integrations.profile import gaussian_start, profile
from deepprop.integrations.pytorch import init_
from deepprop.integrations.theory_layers import Propagator
from deepprop.integrations.zoo import ResidualMLP, VanillaCNN
from deepprop.report.claims_real_models import deviations

WORKLOADS = {
    "residual": ("50-block residual MLP, width 256", lambda: ResidualMLP(256, 256, 50), (256,)),
    "cnn": ("30-layer CNN, 64 channels, 32x32", lambda: VanillaCNN(3, 64, 30), (3, 32, 32)),
}


def peer(model: torch.nn.Module, shape: tuple[int, ...], inits: int, pairs: int | None) -> float:
    """Seconds for hooks + forward-mode AD to collect q, c and tangent norms at every leaf module."""
    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    stats: list[tuple[float, float, float]] = []
    pairs = pairs or (4 if len(shape) == 1 else 2)  # as profile's default for these two inputs

    def hook(module, inputs, output):
        primal, tangent = fwAD.unpack_dual(output)
        p = primal.detach().flatten(1).double()
        a, b = p[:pairs], p[pairs:]
        q = float(p.square().mean())
        c = float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())
        t = float(tangent.detach().double().square().sum() / p.shape[0]) if tangent is not None else 0.0
        stats.append((q, c, t))

    handles = [m.register_forward_hook(hook) for m in leaves]
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    with torch.no_grad():
        for _ in range(inits):
            xa, xb = gaussian_pairs(shape, pairs, 0.5, 1.0, gen, torch.float32, torch.device("cpu"))
            x = torch.cat([xa, xb])
            with fwAD.dual_level():
                model(fwAD.make_dual(x, torch.randn_like(x)))
    seconds = time.perf_counter() - start
    for h in handles:
        h.remove()
    return seconds


def parts(model: torch.nn.Module, x: torch.Tensor, inits: int, pairs: int | None) -> dict[str, float]:
    """Seconds spent tracing, in the theory and in the measurement (one profile's worth of work)."""
    pairs = pairs or (4 if x.dim() == 2 else 2)
    t0 = time.perf_counter()
    graph = trace_model(model, x)
    t1 = time.perf_counter()
    start, disp = gaussian_start(tuple(x.shape[1:]), 1.0, 0.5)
    Propagator(graph, start, disp)
    t2 = time.perf_counter()
    shape = tuple(x.shape[1:])
    measure(graph, lambda k, g: gaussian_pairs(shape, pairs, 0.5, 1.0, g, x.dtype, x.device), inits=inits, seed=0,
            redraw="permute", jacobian=True)
    t3 = time.perf_counter()
    return {"trace_s": t1 - t0, "theory_s": t2 - t1, "measure_s": t3 - t2}


def run(name: str, repeat: int, inits: int, pairs: int | None) -> list[dict]:
    title, build, shape = WORKLOADS[name]
    out = []
    for init in ("PyTorch default", "init_"):
        torch.manual_seed(0)
        model = build()
        x = torch.randn((2,) + shape, generator=torch.Generator().manual_seed(1))
        if init == "init_":
            init_(model, example_input=x, generator=torch.Generator().manual_seed(0))
        t = time.perf_counter()
        first = profile(model, x, inits=inits, pairs=pairs)
        warm = time.perf_counter() - t
        times, cpu = [], []
        for _ in range(repeat):
            t, c = time.perf_counter(), time.process_time()
            profile(model, x, inits=inits, pairs=pairs)
            times.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
        dev = deviations(first)
        row = {"workload": title, "init": init, "profile_s_median": statistics.median(times), "profile_s_all": times,
               "profile_cpu_s_median": statistics.median(cpu), "load_average": os.getloadavg(),
               "first_call_s": warm, "peer_s": peer(model, shape, inits, pairs), "inits": inits, "pairs": first.pairs,
               "steps": len(first.rows), "q_max_rel_dev": dev["q"], "c_max_rel_dev": dev["c"],
               "exact_rows": dev["rows"], "verdict": first.diagnosis.verdict, **parts(model, x, inits, pairs)}
        out.append(row)
        print(json.dumps(row), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=sorted(WORKLOADS), default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--inits", type=int, default=8)
    ap.add_argument("--pairs", type=int, default=None, help="default: profile's own (4; 2 for the CNN's 3x32x32)")
    ap.add_argument("--json", default=None, help="write all rows to this file")
    args = ap.parse_args(argv)
    info = {"date": time.strftime("%Y-%m-%d %H:%M"), "torch": torch.__version__, "threads": torch.get_num_threads(),
            "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "load_average": os.getloadavg(), "command": " ".join(["python"] + sys.argv)}
    print(json.dumps(info), flush=True)
    rows = []
    for name in ([args.only] if args.only else list(WORKLOADS)):
        rows += run(name, args.repeat, args.inits, args.pairs)
    info["load_average_after"] = os.getloadavg()
    print("\n| workload | init | profile() median wall (s) | its CPU time (s) | first call (s) | peer (s) "
          "| trace / theory / measure (s) | max dev q / c (exact rows) | verdict |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['workload']} | {r['init']} | {r['profile_s_median']:.1f} | {r['profile_cpu_s_median']:.1f} | "
              f"{r['first_call_s']:.1f} | "
              f"{r['peer_s']:.1f} | {r['trace_s']:.2f} / {r['theory_s']:.2f} / {r['measure_s']:.1f} | "
              f"{r['q_max_rel_dev']:.3f} / {r['c_max_rel_dev']:.3f} ({r['exact_rows']}) | {r['verdict']} |")
    print(json.dumps({"load_average_after": info["load_average_after"]}))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"info": info, "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
