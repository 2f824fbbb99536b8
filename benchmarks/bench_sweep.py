"""The sweep engine against the machine's own matmul rate and against two peers, in one run.

Workload per (depth, optimizer): ``--networks`` networks (sigma_w2 spread over [1, 4]), width ``--width``,
batch ``--batch-size``, MNIST-shaped random inputs (784 features, 10 classes), ``--activation`` (tanh),
inverted dropout of keep rate ``--keep-rate`` on every layer's input after the first, float32. Timed in
interleaved rounds (each figure is the median over ``--rounds``; the machine's speed drifts, so every
ratio is formed within a round):

  engine  the sweep engine's training step (mini-batch gather, forward, loss, hand-written backward, update)
  bmm     the same step's matmuls alone, as torch.baddbmm / torch.bmm on preallocated tensors of the same
          shapes: the machine's own rate at the sweep's shapes. engine_fraction = bmm time / engine time
          (same FLOPs): 1 would be a step that costs nothing but its matmuls.
  naive   each network alone: nn.Sequential(Linear, activation, Dropout, ...) + torch.optim, one after another
  func    torch.func: vmap(grad(functional_call)) over the networks' stacked parameters (stack_module_state),
          dropout vmapped with randomness="different", the update as in-place ops on the stacked tensors

FLOPs count the matmuls a step needs (``flops_per_step``: forward, weight gradients, input gradients except
the data's). ``--breakdown`` times each part of an engine step (timers around the trainer's parts; on CUDA
they synchronise) and a whole ``train_ensemble`` call with evaluation. ``--json`` prints one JSON object.

    python benchmarks/bench_sweep.py --device cpu --width 128 --depths 10,100 --threads 2 --json
    python benchmarks/bench_sweep.py --device cuda --width 300 --depths 100 --fig5a
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import datetime
import json
import os
import platform
import shlex
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable

import numpy as np
import torch

from deepprop.activations import get_activation
from deepprop.sweep.ensemble import (
    NetSpec,
    TrainSettings,
    _evaluate,
    batch_indices,
    build_trainer,
    flops_per_step,
    init_params,
    layer_sizes,
    train_ensemble,
)

N_IN, N_OUT = 784, 10


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


CLOCK = time.perf_counter


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = CLOCK()
    fn()
    _sync(device)
    return CLOCK() - t0


class Workload:
    """Networks, data and the four ways of training them."""

    def __init__(self, a: argparse.Namespace, depth: int, optimizer: str, x: torch.Tensor, y: torch.Tensor):
        self.device, self.x, self.y = x.device, x, y
        self.k, self.batch, self.steps = a.networks, a.batch_size, a.steps
        lr = 1e-3 if optimizer == "sgd" else 1e-5
        self.specs = [NetSpec(float(s), 0.05, lr, i % 2, 1000 * depth + i, 7 + i, keep_rate=a.keep_rate)
                      for i, s in enumerate(np.linspace(1.0, 4.0, a.networks))]
        self.settings = TrainSettings(depth=depth, width=a.width, activation=a.activation, optimizer=optimizer,
                                      batch_size=a.batch_size, steps=a.steps, eval_train=a.eval,
                                      eval_test=a.eval)
        self.init = init_params(self.specs, self.settings, N_IN, N_OUT, self.device)
        self.flops = a.networks * flops_per_step(self.settings, N_IN, N_OUT)  # one step of every network
        self.order = torch.from_numpy(np.stack([batch_indices(s.seed, len(y), 1000, a.batch_size)
                                                for s in self.specs], axis=1)).to(self.device)  # (1000, K, B)
        self.trainer = build_trainer(self.specs, self.settings, *self.init)
        self.batch_x = torch.empty(self.k * self.batch, N_IN, device=self.device)
        self.alive = torch.ones(self.k, dtype=torch.bool, device=self.device)
        self.clock = 0
        self._floor_tensors()
        self.naive_models = self.func_state = None
        if "naive" in a.peers:
            self.naive_models = [self._model(k) for k in range(self.k)]
        if "func" in a.peers:
            self._func_setup()

    # ---- engine ----------------------------------------------------------------------------------------

    def gather(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.order[step % len(self.order)]
        torch.index_select(self.x, 0, idx.view(-1), out=self.batch_x)
        return self.batch_x.view(self.k, self.batch, N_IN), self.y[idx]

    def engine(self, steps: int, gather: Callable | None = None) -> None:
        gather = gather or self.gather
        for _ in range(steps):
            xb, yb = gather(self.clock)
            loss = self.trainer.forward_loss(self.clock, xb, yb)
            self.alive &= torch.isfinite(loss)
            self.trainer.backward_update(self.alive)
            self.clock += 1

    # ---- the same matmuls alone --------------------------------------------------------------------------

    def _floor_tensors(self) -> None:
        k, b, dev = self.k, self.batch, self.device
        sizes = layer_sizes(self.settings.depth, self.settings.width, N_IN, N_OUT)
        self.f_in = [torch.randn(k, b, i, device=dev) for i, _ in sizes]
        self.f_w = [torch.randn(k, i, o, device=dev) * 0.01 for i, o in sizes]
        self.f_bias = [torch.randn(k, 1, o, device=dev) for _, o in sizes]
        self.f_out = [torch.randn(k, b, o, device=dev) for _, o in sizes]
        self.f_din = [torch.empty(k, b, i, device=dev) for i, _ in sizes]
        self.f_grad = [torch.empty(k, i, o, device=dev) for i, o in sizes]
        n = self.settings.width
        self.sq = (torch.randn(k, b, n, device=dev), torch.randn(k, n, n, device=dev), torch.empty(k, b, n, device=dev))
        self.sq_calls = max(1, round(self.flops / (2.0 * k * b * n * n)))

    def floor(self, steps: int) -> None:
        sgd = self.settings.optimizer == "sgd"
        for _ in range(steps):
            for i in range(len(self.f_w)):
                torch.baddbmm(self.f_bias[i], self.f_in[i], self.f_w[i], out=self.f_out[i])
            for i in reversed(range(len(self.f_w))):
                if i > 0:
                    torch.bmm(self.f_out[i], self.f_w[i].transpose(1, 2), out=self.f_din[i])
                if sgd:  # the engine writes SGD's update into the weights with the gradient's matmul
                    self.f_w[i].baddbmm_(self.f_in[i].transpose(1, 2), self.f_out[i], alpha=1e-12)
                else:
                    torch.bmm(self.f_in[i].transpose(1, 2), self.f_out[i], out=self.f_grad[i])

    def square(self, steps: int) -> None:
        """As many FLOPs as a step, all in the sweep's square shape (K, B, N) x (K, N, N)."""
        a, w, out = self.sq
        for _ in range(self.sq_calls * steps):
            torch.bmm(a, w, out=out)

    # ---- naive peer ----------------------------------------------------------------------------------------

    def _model(self, k: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        phi = get_activation(self.settings.activation)
        w, b = self.init
        layers: list[torch.nn.Module] = []
        for i in range(len(w)):
            if i > 0:
                layers.append(phi.torch_module())
                if self.specs[k].keep_rate < 1:
                    layers.append(torch.nn.Dropout(p=1.0 - self.specs[k].keep_rate))  # rho is the KEEP rate
            lin = torch.nn.Linear(w[i].shape[1], w[i].shape[2], device=self.device)
            with torch.no_grad():
                lin.weight.copy_(w[i][k].T)
                lin.bias.copy_(b[i][k, 0])
            layers.append(lin)
        model = torch.nn.Sequential(*layers).train()
        s = self.specs[k]
        if self.settings.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=s.lr)
        else:
            opt = torch.optim.RMSprop(model.parameters(), lr=s.lr, alpha=0.99, eps=1e-8)
        return model, opt

    def naive(self, steps: int) -> None:
        for k, (model, opt) in enumerate(self.naive_models):
            for step in range(steps):
                idx = self.order[(self.clock + step) % len(self.order), k]
                opt.zero_grad(set_to_none=True)
                torch.nn.functional.cross_entropy(model(self.x[idx]), self.y[idx]).backward()
                opt.step()

    # ---- torch.func peer -----------------------------------------------------------------------------------

    def _func_setup(self) -> None:
        from torch.func import functional_call, grad, stack_module_state, vmap

        models = [self._model(k)[0] for k in range(self.k)]
        params, buffers = stack_module_state(models)
        skeleton = copy.deepcopy(models[0]).to("meta")

        def loss(p: dict, b: dict, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.cross_entropy(functional_call(skeleton, (p, b), (x,)), y)

        lr = torch.tensor([s.lr for s in self.specs], device=self.device)
        self.func_state = {
            "params": params, "buffers": buffers, "grad": vmap(grad(loss), randomness="different"),
            "lr": {n: lr.view(-1, *[1] * (p.dim() - 1)) for n, p in params.items()},
            "sq": {n: torch.zeros_like(p) for n, p in params.items()},
        }

    def func(self, steps: int) -> None:
        st = self.func_state
        for _ in range(steps):
            xb, yb = self.gather(self.clock)
            grads = st["grad"](st["params"], st["buffers"], xb, yb)
            with torch.no_grad():
                for n, p in st["params"].items():
                    g = grads[n]
                    if self.settings.optimizer == "sgd":
                        p.sub_(st["lr"][n] * g)
                    else:
                        v = st["sq"][n].mul_(0.99).addcmul_(g, g, value=0.01)
                        p.sub_(st["lr"][n] * g / (v.sqrt() + 1e-8))
            self.clock += 1


# ---- measurements ----------------------------------------------------------------------------------------------


def measure(w: Workload, a: argparse.Namespace) -> dict:
    dev = w.device
    ways = {"engine": (lambda: w.engine(a.steps), a.steps), "bmm": (lambda: w.floor(a.steps), a.steps),
            "bmm_square": (lambda: w.square(a.steps), a.steps)}
    if w.naive_models is not None:
        ways["naive"] = (lambda: w.naive(a.naive_steps), a.naive_steps)
    if w.func_state is not None:
        ways["func"] = (lambda: w.func(a.steps), a.steps)
    for fn, _ in ways.values():  # warm-up: kernel choices, allocator, first-call overheads
        fn()
    per_step: dict[str, list[float]] = defaultdict(list)  # seconds for one step of every network
    for _ in range(a.rounds):
        for name, (fn, steps) in ways.items():
            per_step[name].append(_timed(fn, dev) / steps)
    row = {"depth": w.settings.depth, "optimizer": w.settings.optimizer}
    med = {n: statistics.median(v) for n, v in per_step.items()}
    for n, t in med.items():
        if n == "bmm_square":
            row["bmm_square_gflops"] = w.sq_calls * 2.0 * w.k * w.batch * w.settings.width**2 / t / 1e9
            continue
        row[f"{n}_network_steps_per_s"] = w.k / t
        row[f"{n}_gflops"] = w.flops / t / 1e9
    row["engine_fraction"] = statistics.median(b / e for b, e in zip(per_step["bmm"], per_step["engine"], strict=True))
    for peer in ("naive", "func"):
        if peer in per_step:
            row[f"{peer}_ratio"] = statistics.median(p / e for p, e in zip(per_step[peer], per_step["engine"],
                                                                           strict=True))
    row["_median_s"] = med
    return row


def breakdown(w: Workload, a: argparse.Namespace) -> dict:
    """Seconds per engine step in each part, exclusive of the parts nested in it."""
    dev, tr = w.device, w.trainer
    spent: dict[str, float] = defaultdict(float)
    stack: list[list] = []

    def timer(part: str, fn: Callable) -> Callable:
        def wrapped(*args, **kw):
            _sync(dev)
            stack.append([part, CLOCK(), 0.0])
            try:
                return fn(*args, **kw)
            finally:
                _sync(dev)
                name, t0, inner = stack.pop()
                took = CLOCK() - t0
                spent[name] += took - inner
                if stack:
                    stack[-1][2] += took
        return wrapped

    for attr in ("_baddbmm", "_bmm", "_add_product_"):
        setattr(tr, attr, timer("matmul", getattr(tr, attr)))
    tr._update = timer("optimizer (besides its matmul)", tr._update)
    tr._loss = timer("loss", tr._loss)
    tr._loss_grad = timer("loss", tr._loss_grad)
    tr._noise_grad = timer("noise: apply", tr._noise_grad)
    kern = tr.kernel
    tr.kernel = type(kern)(kern.name, timer("activation", kern.forward_), timer("activation", kern.backward),
                           kern.keeps_input)
    tr._apply_factor = timer("noise: apply", tr._apply_factor)
    if tr.noise is not None:
        noise = copy.copy(tr.noise)
        noise.apply = timer("noise: drawn and applied per layer", noise.apply)
        noise.fill_factors = timer("noise: hashed masks", noise.fill_factors)
        tr.noise = noise
    gather = timer("data (mini-batch gather)", w.gather)
    steps = max(a.steps, 3)
    w.engine(1, gather)
    spent.clear()
    total = _timed(lambda: w.engine(steps, gather), dev)
    out = {part: t / steps for part, t in sorted(spent.items(), key=lambda kv: -kv[1])}
    out["other (Python, dispatch, timers)"] = total / steps - sum(out.values())
    out["total"] = total / steps
    return out


def kernel_costs(w: Workload, a: argparse.Namespace) -> dict:
    """Milliseconds of one hidden layer's kernels on (K, B, N): the activation's forward as the engine runs
    it, torch.exp and one elementwise multiply on the same tensor (what an ordinary pass costs), the hashed
    dropout masks of one layer (one thread), the forward matmul. Minimum over ``--rounds`` x 20 calls."""
    k, b, n, dev = w.k, w.batch, w.settings.width, w.device
    h0 = torch.randn(k, b, n, device=dev) * 1.5
    h, out = h0.clone(), torch.empty_like(h0)
    a_in, weight, bias = torch.randn(k, b, n, device=dev), torch.randn(k, n, n, device=dev) / n, h0[:, :1].clone()
    kernel = w.trainer.kernel
    parts: dict[str, Callable[[], object]] = {
        f"{kernel.name} forward": lambda: kernel.forward_(h.copy_(h0)),
        "copy (subtracted from the forward)": lambda: h.copy_(h0),
        "torch.exp": lambda: torch.exp(h0, out=out),
        "one multiply": lambda: torch.mul(h0, a_in, out=out),
        "forward matmul (baddbmm)": lambda: torch.baddbmm(bias, a_in, weight, out=out),
    }
    noise = w.trainer.noise
    if noise is not None and getattr(noise, "_dropout", None) is not None and dev.type == "cpu":
        parts["hashed masks, one thread"] = lambda: noise._dropout.factors(0, 1, (b, n))
    ms = {}
    for name, fn in parts.items():
        fn()
        ms[name] = min(_timed(lambda fn=fn: [fn() for _ in range(20)], dev) / 20 for _ in range(a.rounds)) * 1e3
    ms[f"{kernel.name} forward"] -= ms.pop("copy (subtracted from the forward)")
    return ms


def ceiling(row: dict) -> float | None:
    """The engine_fraction the step would reach if everything but its matmuls, its activation and its
    hashed masks cost nothing: bmm / (bmm + activation + masks), from the breakdown's shares."""
    parts = row.get("breakdown_s_per_step")
    if not parts:
        return None
    bmm = row["_median_s"]["bmm"]
    return bmm / (bmm + parts.get("activation", 0.0) + parts.get("noise: hashed masks", 0.0))


def end_to_end(w: Workload, a: argparse.Namespace) -> dict:
    """One train_ensemble call (init, training, evaluation of the train/test subsets at the end) and the
    evaluation alone."""
    s = w.settings
    settings = dataclasses.replace(s, steps=a.end_to_end_steps)
    total = _timed(lambda: train_ensemble(w.specs, settings, w.x, w.y, w.x, w.y, N_OUT), w.device)
    phi = get_activation(s.activation)
    ev = _timed(lambda: (_evaluate(w.x[: a.eval], w.y[: a.eval], *w.init, phi),
                         _evaluate(w.x[: a.eval], w.y[: a.eval], *w.init, phi)), w.device)
    return {"steps": a.end_to_end_steps, "eval_examples": 2 * a.eval, "wall_s": total, "evaluation_s": ev,
            "network_steps_per_s": w.k * a.end_to_end_steps / total, "evaluation_share": ev / total}


def fig5a(a: argparse.Namespace, x: torch.Tensor, y: torch.Tensor) -> dict:
    """A fig. 5a-size grid with the engine: 30 depths 10..300 x 30 sigma_w2, 200 SGD steps, width --width."""
    t0 = time.perf_counter()
    flops = 0.0
    for depth in np.linspace(10, 300, 30).astype(int):
        st = TrainSettings(depth=int(depth), width=a.width, steps=200, batch_size=a.batch_size, eval_train=1000,
                           eval_test=1000, precision=a.precision)
        lr = 1e-3 if depth < 200 else 1e-4
        specs = [NetSpec(float(s), 0.05, lr, 0, 7 * int(depth) + i, i) for i, s in enumerate(np.linspace(1, 4, 30))]
        train_ensemble(specs, st, x, y, x[:1000], y[:1000], N_OUT)
        flops += len(specs) * 200 * flops_per_step(st, N_IN, N_OUT)
    _sync(x.device)
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "tflops": flops / wall / 1e12}


def summary(rows: list[dict], a: argparse.Namespace, device: str) -> dict:
    """The contract's keys: rates and fractions over all rows, each row weighted by its work."""
    med = [r["_median_s"] for r in rows]
    flops = [r["engine_gflops"] * r["_median_s"]["engine"] for r in rows]  # GFLOP of one step of every network
    out = {"device": device, "width": a.width, "threads": torch.get_num_threads(),
           "engine_gflops": sum(flops) / sum(m["engine"] for m in med),
           "bmm_gflops": sum(flops) / sum(m["bmm"] for m in med),
           "engine_fraction": sum(m["bmm"] for m in med) / sum(m["engine"] for m in med),
           "engine_fraction_min": min(r["engine_fraction"] for r in rows),
           "bmm_square_gflops": statistics.median(r["bmm_square_gflops"] for r in rows)}
    out["engine_fraction_of_square"] = out["engine_gflops"] / out["bmm_square_gflops"]
    for peer in ("naive", "func"):
        out[f"{peer}_ratio"] = (sum(m[peer] for m in med) / sum(m["engine"] for m in med)
                                if all(peer in m for m in med) else None)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depths", default="10,100")
    p.add_argument("--optimizers", default="sgd,rmsprop")
    p.add_argument("--activation", default="tanh")
    p.add_argument("--keep-rate", type=float, default=0.9, help="dropout KEEP rate rho (1: no dropout)")
    p.add_argument("--networks", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=3, help="engine / bmm / func steps per round")
    p.add_argument("--naive-steps", type=int, default=1, help="steps of each network per round of the naive loop")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--peers", default="naive,func", help="comma list of naive, func (empty: none)")
    p.add_argument("--n-train", type=int, default=10000)
    p.add_argument("--eval", type=int, default=2000, help="examples of each evaluated subset (end-to-end run)")
    p.add_argument("--end-to-end-steps", type=int, default=50)
    p.add_argument("--breakdown", action="store_true", help="time the parts of an engine step and a whole run")
    p.add_argument("--precision", default="fp32", choices=["fp32", "tf32", "bf16"])
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--fig5a", action="store_true", help="also time a fig. 5a-size grid with the engine")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="cpu: this process's CPU time (robust on a shared machine with one thread; with more, "
                        "it also counts threads waiting for each other)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--write-cost-table", metavar="PATH",
                   help="merge this run's rows into the cost table module (src/deepprop/sweep/cost_table.py)")
    a = p.parse_args()
    global CLOCK
    CLOCK = time.process_time if a.clock == "cpu" else time.perf_counter
    a.peers = [s for s in a.peers.split(",") if s]
    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = a.precision == "tf32"
    device = (f"cuda ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda"
              else f"cpu ({_cpu_name()}, {os.cpu_count()} cores)")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(a.n_train, N_IN, generator=g).to(dev)
    y = torch.randint(0, N_OUT, (a.n_train,), generator=g).to(dev)
    load_before = os.getloadavg()
    rows = []
    for depth in [int(d) for d in a.depths.split(",")]:
        for opt in a.optimizers.split(","):
            w = Workload(a, depth, opt, x, y)
            row = measure(w, a)
            if a.breakdown:
                row["breakdown_s_per_step"] = breakdown(w, a)
                row["end_to_end"] = end_to_end(w, a)
                row["kernel_ms_per_layer"] = kernel_costs(w, a)
                row["fraction_ceiling"] = ceiling(row)
            rows.append(row)
            if not a.json:
                print(_row_text(row), flush=True)
    out = summary(rows, a, device)
    out.update({"clock": a.clock, "batch_size": a.batch_size, "networks": a.networks, "keep_rate": a.keep_rate,
                "activation": a.activation, "precision": a.precision,
                "rows": [{k: v for k, v in r.items() if k != "_median_s"} for r in rows],
                "load_average": [load_before, os.getloadavg()], "torch": torch.__version__,
                "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": "python " + shlex.join(sys.argv)})
    if a.fig5a:
        out["fig5a"] = fig5a(a, x, y)
    if a.write_cost_table:
        write_cost_table(a.write_cost_table, out)
    if a.json:
        print(json.dumps(out, indent=1))
        return
    print(f"all rows: engine {out['engine_gflops']:.1f} GFLOP/s = {out['engine_fraction']:.2f} of the same "
          f"matmuls as bmm ({out['bmm_gflops']:.1f} GFLOP/s); naive x{out['naive_ratio'] or float('nan'):.1f}, "
          f"torch.func x{out['func_ratio'] or float('nan'):.1f}; threads {out['threads']}, load {load_before[0]:.1f}")
    if "fig5a" in out:
        print(f"fig5a grid: {out['fig5a']['wall_s']:.1f} s, {out['fig5a']['tflops']:.2f} TFLOP/s")


TABLE_KEYS = ("width", "depth", "optimizer", "keep_rate", "activation", "batch_size", "networks", "threads")
TABLE_VALUES = ("engine_fraction", "engine_gflops", "bmm_gflops", "bmm_square_gflops", "engine_network_steps_per_s")


def write_cost_table(path: str, out: dict) -> None:
    """Merge this run's rows into the table that deepprop.sweep.cost reads (rows of the same shape replaced)."""
    rows: list[dict] = []
    if os.path.exists(path):
        with open(path) as f:
            table: dict = {}
            exec(compile(f.read(), path, "exec"), table)  # the table this function wrote before
        rows = list(table["ROWS"])
    new = [{**{k: out[k] for k in TABLE_KEYS if k in out}, **{k: r[k] for k in ("depth", "optimizer")},
            **{k: round(r[k], 3 if k == "engine_fraction" else 1) for k in TABLE_VALUES}, "clock": out["clock"],
            "load_average": round(out["load_average"][0][0], 2), "date": out["date"][:10]} for r in out["rows"]]
    shape = lambda r: tuple(r[k] for k in TABLE_KEYS)  # noqa: E731
    fresh = {shape(r) for r in new}
    rows = sorted([r for r in rows if shape(r) not in fresh] + new,
                  key=lambda r: (r["activation"], r["optimizer"], r["keep_rate"], r["width"], r["depth"], r["threads"]))
    import textwrap

    doc = textwrap.fill(
        "Written by `benchmarks/bench_sweep.py --write-cost-table` (one run per width; rows of the same shape are "
        f"replaced): do not edit by hand. Last run {out['date']}: {out['command']}", 110)
    columns = (*TABLE_KEYS, *TABLE_VALUES, "clock", "load_average", "date")
    lines = "".join(f"    {tuple(r.get(c) for c in columns)!r},\n" for r in rows)
    names = textwrap.fill(", ".join(repr(c) for c in columns), 110, initial_indent="    ", subsequent_indent="    ")
    text = (f'"""Measured speed of the sweep engine, read by :mod:`deepprop.sweep.cost`.\n\n{doc}\n"""\n\n'
            f"MACHINE = {out['device']!r}\nDATE = {out['date'][:10]!r}\n\nCOLUMNS = (\n{names},\n)\n\n"
            f"ROWS = [dict(zip(COLUMNS, values, strict=True)) for values in [\n{lines}]]\n")
    with open(path, "w") as f:
        f.write(text)


def _row_text(r: dict) -> str:
    s = (f"depth {r['depth']:4d} {r['optimizer']:7s}: engine {r['engine_network_steps_per_s']:8.1f} net-steps/s "
         f"({r['engine_gflops']:.1f} GFLOP/s), bmm {r['bmm_gflops']:.1f} GFLOP/s, fraction {r['engine_fraction']:.2f}")
    for peer in ("naive", "func"):
        if f"{peer}_ratio" in r:
            s += f", {peer} x{r[f'{peer}_ratio']:.1f}"
    for part, t in r.get("breakdown_s_per_step", {}).items():
        s += f"\n    {part:34s} {t * 1e3:9.2f} ms/step"
    for part, t in r.get("kernel_ms_per_layer", {}).items():
        s += f"\n    one layer: {part:34s} {t:7.3f} ms"
    if r.get("fraction_ceiling") is not None:
        s += (f"\n    ceiling: fraction {r['fraction_ceiling']:.2f} if all but the matmuls, the activation and "
              "the masks cost nothing")
    if "end_to_end" in r:
        e = r["end_to_end"]
        s += (f"\n    whole train_ensemble, {e['steps']} steps + evaluation of {e['eval_examples']} examples: "
              f"{e['wall_s']:.2f} s ({e['network_steps_per_s']:.1f} net-steps/s), evaluation "
              f"{e['evaluation_share']:.0%}")
    return s


if __name__ == "__main__":
    main()
