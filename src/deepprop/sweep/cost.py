"""What training sweeps cost: network-steps, matmul FLOPs and seconds on a measured machine.

A sweep (or a trainability row of ``deepprop reproduce``) trains each network once, to its largest budget,
and scores it on ``eval_train`` + ``eval_test`` examples after every budget. Its work is exact:

    network-steps = networks x largest budget
    FLOPs         = sum over networks of  steps x flops_per_step  +  budgets x examples x 2 sum(fan_in fan_out)

Its time is estimated from the engine's measured speed,

    seconds = FLOPs / engine rate,    engine rate = engine_fraction x bmm rate of the step's matmuls,

both measured by ``benchmarks/bench_sweep.py`` and kept in :mod:`deepprop.sweep.cost_table` (its
``--write-cost-table`` writes it), interpolated in log width and log depth between measured rows of the same
optimizer, dropout (or not) and activation, and held constant outside them. On another machine pass its
square bmm rate ``bmm_gflops`` (:func:`measure_bmm_gflops`, ~0.5 s): the engine rate is then the table's,
relative to its machine's square bmm rate, times that.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from deepprop.errors import ParameterError
from deepprop.sweep.ensemble import TrainSettings, flops_per_step, layer_sizes


@dataclass(frozen=True)
class SweepCost:
    """Work and estimated time of training a set of networks."""

    trainings: int  # networks trained (one per grid cell and seed, whatever the number of budgets)
    network_steps: int
    flops: float  # matmul FLOPs of training and evaluation
    evaluation_flops: float
    seconds: float  # estimate at ``engine_gflops``
    engine_gflops: float  # FLOP rate assumed (work-weighted over depths)
    basis: str  # where the rate comes from

    def text(self) -> str:
        return (f"{self.trainings} networks, {self.network_steps:,} network-steps, {self.flops / 1e12:,.2f} TFLOP, "
                f"~{_duration(self.seconds)} at {self.engine_gflops:.0f} GFLOP/s ({self.basis})")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _rows(optimizer: str, keep_rate: float, activation: str) -> tuple[list[dict], str]:
    """Measured rows closest to the case: same optimizer, same dropout-or-not, same activation if measured."""
    from deepprop.sweep import cost_table

    rows = [r for r in cost_table.ROWS if r["optimizer"] == optimizer] or list(cost_table.ROWS)
    if not rows:
        raise ParameterError("cost_table", "holds no measured rows; run benchmarks/bench_sweep.py --write-cost-table")
    same_noise = [r for r in rows if (r["keep_rate"] < 1.0) == (keep_rate < 1.0)]
    rows = same_noise or rows
    same_act = [r for r in rows if r["activation"] == activation]
    note = "" if same_act else f", {rows[0]['activation']} measured in place of {activation}"
    return same_act or rows, note


def _interpolate(rows: Sequence[dict], key: str, width: int, depth: int) -> float:
    """``key`` at (width, depth): linear in log depth at each measured width, then in log width."""
    by_width: dict[int, list[dict]] = {}
    for r in rows:
        by_width.setdefault(int(r["width"]), []).append(r)
    widths = sorted(by_width)
    at_width = []
    for w in widths:
        pts = sorted(by_width[w], key=lambda r: r["depth"])
        at_width.append(float(np.interp(math.log(depth), [math.log(r["depth"]) for r in pts],
                                        [r[key] for r in pts])))
    return float(np.interp(math.log(width), [math.log(w) for w in widths], at_width))


def engine_fraction(width: int, depth: int, *, optimizer: str = "sgd", keep_rate: float = 1.0,
                    activation: str = "tanh") -> float:
    """Measured share of the machine's bmm rate that the engine reaches at this shape."""
    rows, _ = _rows(optimizer, keep_rate, activation)
    return _interpolate(rows, "engine_fraction", width, depth)


def engine_gflops(width: int, depth: int, *, optimizer: str = "sgd", keep_rate: float = 1.0, activation: str = "tanh",
                  bmm_gflops: float | None = None) -> tuple[float, str]:
    """(engine matmul GFLOP/s, what it rests on): the table's measured rate, or, given this machine's square
    bmm rate ``bmm_gflops`` (:func:`measure_bmm_gflops`), the table's engine rate relative to the square bmm
    rate of its machine times that."""
    from deepprop.sweep import cost_table

    rows, note = _rows(optimizer, keep_rate, activation)
    rate = _interpolate(rows, "engine_gflops", width, depth)
    if bmm_gflops is None:
        threads = "/".join(str(t) for t in sorted({r.get("threads", "?") for r in rows}))
        return rate, f"measured on {cost_table.MACHINE}, {threads} torch thread(s), {cost_table.DATE}{note}"
    relative = rate / _interpolate(rows, "bmm_square_gflops", width, depth)
    return relative * bmm_gflops, f"{relative:.2f} x bmm {bmm_gflops:.0f} GFLOP/s{note}"


def network_steps_per_second(width: int, depth: int, *, batch_size: int = 128, n_in: int = 784, n_out: int = 10,
                             optimizer: str = "sgd", keep_rate: float = 1.0, activation: str = "tanh",
                             bmm_gflops: float | None = None) -> float:
    """Training steps of one network per second (a batch of networks does this many in total)."""
    rate, _ = engine_gflops(width, depth, optimizer=optimizer, keep_rate=keep_rate, activation=activation,
                            bmm_gflops=bmm_gflops)
    settings = TrainSettings(depth=int(depth), width=int(width), batch_size=int(batch_size))
    return rate * 1e9 / flops_per_step(settings, n_in, n_out)


def training_cost(*, width: int, depths: Sequence[int], networks_per_depth: int, budgets: Sequence[int],
                  batch_size: int = 128, n_in: int = 784, n_out: int = 10, optimizer: str = "sgd",
                  keep_rate: float = 1.0, activation: str = "tanh", eval_examples: int = 0,
                  bmm_gflops: float | None = None) -> SweepCost:
    """Cost of training ``networks_per_depth`` networks at each depth to max(budgets), each scored on
    ``eval_examples`` examples (train + test subsets) after every budget."""
    steps = max(budgets)
    flops = eval_flops = seconds = 0.0
    basis = ""
    for depth in depths:
        settings = TrainSettings(depth=int(depth), width=int(width), batch_size=int(batch_size))
        train = networks_per_depth * steps * flops_per_step(settings, n_in, n_out)
        forward = 2.0 * sum(a * b for a, b in layer_sizes(int(depth), int(width), n_in, n_out))
        evaluation = networks_per_depth * len(set(budgets)) * eval_examples * forward
        rate, basis = engine_gflops(width, depth, optimizer=optimizer, keep_rate=keep_rate, activation=activation,
                                    bmm_gflops=bmm_gflops)
        flops += train + evaluation
        eval_flops += evaluation
        seconds += (train + evaluation) / (rate * 1e9)
    trainings = networks_per_depth * len(depths)
    return SweepCost(trainings, trainings * steps, flops, eval_flops, seconds, flops / seconds / 1e9, basis)


def sweep_cost(cfg, n_in: int, n_out: int, *, n_train: int | None = None, n_test: int | None = None,
               bmm_gflops: float | None = None) -> SweepCost:
    """Cost of a :class:`~deepprop.sweep.config.SweepConfig` on data of ``n_in`` features and ``n_out`` classes
    (``n_train`` / ``n_test``: the data's sizes, which cap the evaluated subsets). Keep rates are costed with
    dropout when any is below 1."""
    def capped(n: int | None, size: int | None) -> int:
        sizes = [v for v in (n, size) if v is not None]
        return min(sizes) if sizes else 0

    examples = capped(cfg.eval_train, n_train) + capped(cfg.eval_test, n_test)
    return training_cost(
        width=cfg.width, depths=cfg.depths, networks_per_depth=len(cfg.sigma_w2) * len(cfg.keep_rates) * len(cfg.seeds),
        budgets=cfg.budgets, batch_size=cfg.batch_size, n_in=n_in, n_out=n_out, optimizer=cfg.optimizer,
        keep_rate=min(cfg.keep_rates), activation=cfg.activation, eval_examples=examples, bmm_gflops=bmm_gflops)


def measure_bmm_gflops(width: int, *, batch_size: int = 128, networks: int = 16, device: str = "cpu",
                       seconds: float = 0.5) -> float:
    """This machine's float32 torch.bmm rate on (networks, batch, width) x (networks, width, width), GFLOP/s
    (median of repeated calls for about ``seconds``)."""
    dev = torch.device(device)
    a = torch.randn(networks, batch_size, width, device=dev)
    w = torch.randn(networks, width, width, device=dev)
    out = torch.empty(networks, batch_size, width, device=dev)
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 5:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        t0 = time.perf_counter()
        torch.bmm(a, w, out=out)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
    return 2.0 * networks * batch_size * width * width / float(np.median(times[1:])) / 1e9
