"""Trainability sweeps behind figs. 5-8 (001), the trainable-length curves (002) and the trainable depth under
the critical initialisation (004): what is trained, with which learning rates, and how it runs.

A sweep (:class:`SweepSpec`) is a grid depth x sigma_w2 x keep rate x seed trained at several budgets (each
network once, to its largest budget, scored after each: :mod:`deepprop.sweep.config`). Its learning rate is
chosen per depth by a small grid search, as the paper chose its own (1e-6 ... 1e-2 in factors of 10, which
gave 1e-3 for SGD below depth 200): the networks of the search column (the critical sigma_w2, seed 0) are
trained at every rate of ``lr_grid`` up to the search budget, and each depth keeps the rate with the highest
mean accuracy over those budgets (the smaller rate on a tie). The choice is recorded in the row.

Every sweep of a report run writes into one store, OUT/work/trainability.sqlite; a network is keyed by its
run identity, so two claims asking for the same network train it once, and a killed run resumes. The
sweeps' networks are trained by :func:`ensure` in parallel worker processes (one torch thread each, one
process per CPU): the result of a network depends only on its identity, never on who trained it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from deepprop.report.context import Context

STORE = "trainability.sqlite"
SB2 = 0.05


@dataclass(frozen=True)
class SweepSpec:
    """One trainability sweep of a tier. ``sw2_per_keep`` > 0 ties sigma_w2 to the keep rate (sigma_w2 =
    sw2_per_keep * rho: the critical ReLU initialisation) instead of crossing ``sigma_w2`` with ``keep_rates``.
    Depths deeper than ``long_depth`` are trained only to the budgets <= ``short_budget`` (CPU time)."""

    name: str
    depths: tuple[int, ...]
    sigma_w2: tuple[float, ...]
    budgets: tuple[int, ...]
    lr_grid: tuple[float, ...]
    search_sw2: float
    optimizer: str = "sgd"
    keep_rates: tuple[float, ...] = (1.0,)
    seeds: tuple[int, ...] = (0, 1)
    width: int = 32
    dataset: str = "digits"
    activation: str = "tanh"
    sigma_b2: float = SB2
    batch_size: int = 32
    eval_size: int = 1000
    search_budget: int = 2048
    long_depth: int = 10**9
    short_budget: int = 2048
    sw2_per_keep: float = 0.0
    search_keep: float = 1.0

    def budgets_for(self, depth: int) -> tuple[int, ...]:
        return self.budgets if depth <= self.long_depth else tuple(b for b in self.budgets if b <= self.short_budget)

    def search_budgets(self) -> tuple[int, ...]:
        return tuple(b for b in self.budgets if b <= self.search_budget) or (min(self.budgets),)

    def cells(self) -> list[tuple[float, float]]:
        """(sigma_w2, keep rate) pairs of the grid."""
        if self.sw2_per_keep:
            return [(round(self.sw2_per_keep * k, 12), k) for k in self.keep_rates]
        return [(s, k) for k in self.keep_rates for s in self.sigma_w2]


_SW2 = (1.0, 1.2, 1.4, 1.76, 2.2, 3.0, 4.0)
_SW2_QUICK = (1.0, 1.2, 1.4, 1.76, 3.0, 4.0)  # 2.2 (6 xi_c = 97 layers: no cell of the grid beyond) left to full
_SGD_LR = (1e-3, 1e-2, 1e-1)
_RMS_LR = (1e-5, 1e-4, 1e-3)
_PAPER_BUDGETS = (45, 200, 304, 2048, 13780, 14000)  # fig. 7/8 (45, 304, 2048, 13780), fig. 5a 200, 5c 14000


def _tier_specs() -> dict[str, dict[str, SweepSpec]]:
    # CPU tiers: the learning-rate search scores budgets <= 304 (on the quick grid the choices at 2048 are the same
    # for SGD at depths <= 48 and for RMSProp at every depth; a search network trains with two others, so its
    # 2048 steps would cost ~6x their share); the paper tier searches up to 2048
    sgd_quick = SweepSpec("sgd", (6, 12, 24, 48, 96), _SW2_QUICK, _PAPER_BUDGETS, _SGD_LR, 1.76, long_depth=48,
                          search_budget=304)
    rms_quick = replace(sgd_quick, name="rmsprop", optimizer="rmsprop", budgets=(45, 300, 304, 2048),
                        lr_grid=_RMS_LR)
    drop_quick = SweepSpec("dropout", (12, 24, 48, 96), (1.2, 1.5, 1.76, 2.2, 3.0), (304,), _SGD_LR, 1.76,
                           keep_rates=(1.0, 0.99, 0.98, 0.94), search_budget=304)
    relu_quick = SweepSpec("relu", (2, 4, 6, 8, 12, 16, 24, 32), (), (304, 2048), _SGD_LR, 2.0, width=64,
                           activation="relu", sigma_b2=0.0, keep_rates=(1.0, 0.9, 0.8, 0.6), sw2_per_keep=2.0,
                           search_budget=304)
    smoke = {
        "sgd": replace(sgd_quick, depths=(4, 16), sigma_w2=(1.0, 1.76, 4.0), budgets=(5, 20, 40), width=16,
                       lr_grid=(0.02,), seeds=(0,), eval_size=300, long_depth=10**9),
        "rmsprop": replace(rms_quick, depths=(4, 16), sigma_w2=(1.0, 1.76, 4.0), budgets=(5, 20, 40), width=16,
                           lr_grid=(1e-3,), seeds=(0,), eval_size=300),
        "dropout": replace(drop_quick, depths=(4, 16), sigma_w2=(1.0, 1.76, 4.0), budgets=(20,), width=16,
                           lr_grid=(0.02,), seeds=(0,), eval_size=300, search_budget=20),
        "relu": replace(relu_quick, depths=(2, 8), budgets=(20,), width=16, lr_grid=(0.02,), seeds=(0,),
                        keep_rates=(1.0, 0.6), eval_size=300, search_budget=20),
    }
    quick = {"sgd": sgd_quick, "rmsprop": rms_quick, "dropout": drop_quick, "relu": relu_quick}
    fm = dict(dataset="fashion-mnist", sigma_w2=_SW2)
    full = {
        "sgd": replace(sgd_quick, **fm),
        "rmsprop": replace(rms_quick, budgets=(45, 300, 304, 2048, 13780), **fm),
        "dropout": replace(drop_quick, depths=(12, 24, 48, 96, 192), budgets=(304, 2048), dataset="fashion-mnist"),
        "relu": replace(relu_quick, dataset="fashion-mnist"),
        "sgd-w128": replace(sgd_quick, name="sgd-w128", width=128, budgets=(45, 200, 304, 2048), **fm),
        "sgd-w300": replace(sgd_quick, name="sgd-w300", width=300, budgets=(45, 200, 304), search_budget=304,
                            **fm),
    }
    paper_fig = dict(dataset="mnist", width=300, depths=tuple(range(10, 301, 10)),
                     sigma_w2=tuple(float(x) for x in np.round(np.linspace(1.0, 4.0, 30), 4)), batch_size=128,
                     eval_size=10000, seeds=(0, 1), long_depth=10**9)
    paper = {
        "sgd": replace(sgd_quick, lr_grid=(1e-4, 1e-3, 1e-2), search_budget=2048, **paper_fig),
        "rmsprop": replace(rms_quick, budgets=(45, 300, 304, 2048, 13780), lr_grid=(1e-6, 1e-5, 1e-4),
                           search_budget=2048, **paper_fig),
        "dropout": replace(drop_quick, budgets=(304, 2048), lr_grid=(1e-4, 1e-3, 1e-2),
                           **{**paper_fig, "sigma_w2": tuple(sorted(drop_quick.sigma_w2 + (1.0, 1.4, 1.6, 2.0, 2.5,
                                                                                          4.0)))}),
        "relu": replace(relu_quick, width=1000, dataset="mnist", batch_size=128, eval_size=10000,
                        depths=(2, 4, 6, 8, 10, 12, 16, 20, 24, 32, 40),
                        keep_rates=(1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.1), lr_grid=(1e-4, 1e-3, 1e-2)),
        "sgd-w32": replace(full["sgd"], name="sgd-w32", dataset="mnist", long_depth=10**9),
        "sgd-w128": replace(full["sgd-w128"], dataset="mnist", budgets=_PAPER_BUDGETS, long_depth=10**9),
    }
    tiers = {"smoke": smoke, "quick": quick, "full": full, "paper": paper}
    for specs in tiers.values():  # fig. 5b: 2000 SGD steps on CIFAR-10, run only where CIFAR-10 is installed
        b = 20 if specs is smoke else 2000
        specs["cifar10"] = replace(specs["sgd"], name="cifar10", dataset="cifar10", budgets=(b,), search_budget=b,
                                   long_depth=10**9)
    return tiers


SPECS = _tier_specs()
WIDTH_SWEEPS = {"smoke": ("sgd",), "quick": ("sgd",), "full": ("sgd", "sgd-w128", "sgd-w300"),
                "paper": ("sgd-w32", "sgd-w128", "sgd")}
"""The sweeps of own-multiple-vs-budget-width at each tier (one per width)."""

CLAIM_SWEEPS = {
    "001-fig5/sgd-200": ("sgd",), "001-fig5/sgd-long": ("sgd",), "001-fig5/rmsprop": ("rmsprop",),
    "001-fig5/bound": ("sgd", "rmsprop"), "001-fig6/rho-0.99": ("dropout",), "001-fig6/rho-0.98": ("dropout",),
    "001-fig6/rho-0.94": ("dropout",), "001-fig7": ("sgd",), "001-fig8": ("rmsprop",),
    "002-trainable-law": ("dropout",), "004-trainable-depth": ("relu",), "own-multiple-vs-budget-width": None,
}
"""Which sweeps each claim reads (None: the tier's WIDTH_SWEEPS); run_report trains them all first, in parallel."""


def spec(ctx: Context, name: str) -> SweepSpec:
    s = SPECS[ctx.tier][name]
    if ctx.tier == "paper" and s.dataset == "mnist":
        dataset, _ = ctx.mnist_like()
        s = replace(s, dataset=dataset)
    return s


def sweeps_for(claim_ids: Iterable[str], tier: str) -> list[str]:
    """Names of the sweeps the claims read, each once, in a stable order."""
    out: list[str] = []
    for cid in claim_ids:
        names = CLAIM_SWEEPS.get(cid, ())
        for n in WIDTH_SWEEPS[tier] if names is None else names:
            if n not in out:
                out.append(n)
    return out


# ---- configurations ---------------------------------------------------------------------------------------


def _config(s: SweepSpec, ctx: Context, depths: Sequence[int], sw2: Sequence[float], keeps: Sequence[float],
            seeds: Sequence[int], budgets: Sequence[int], lr: float):
    from deepprop.sweep.config import from_mapping

    return from_mapping(dict(
        dataset=s.dataset, data_dir=ctx.data_dir, activation=s.activation, sigma_b2=s.sigma_b2, width=s.width,
        depths=list(depths), sigma_w2=list(sw2), keep_rates=list(keeps), optimizer=s.optimizer, lr=float(lr),
        steps=list(budgets), batch_size=s.batch_size, seeds=list(seeds), eval_train=s.eval_size,
        eval_test=s.eval_size, device=ctx.device))


def _by_keep(s: SweepSpec) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """(sigma_w2 values, keep rates) blocks that a config can cross (one block unless sw2_per_keep ties them)."""
    if s.sw2_per_keep:
        return [((sw,), (k,)) for sw, k in s.cells()]
    return [(s.sigma_w2, s.keep_rates)]


def search_configs(s: SweepSpec, ctx: Context) -> list:
    """The learning-rate search: the critical column, seed 0, every rate of the grid, per depth."""
    sw2 = round(s.sw2_per_keep * s.search_keep, 12) if s.sw2_per_keep else s.search_sw2
    if len(s.lr_grid) == 1:
        return []
    return [_config(s, ctx, [d], [sw2], [s.search_keep], [s.seeds[0]], s.search_budgets(), lr)
            for d in s.depths for lr in s.lr_grid]


def main_configs(s: SweepSpec, ctx: Context, lrs: dict[int, float]) -> list:
    """The grid, one config per (depth, block), at the depth's chosen learning rate."""
    return [_config(s, ctx, [d], sw, keeps, s.seeds, s.budgets_for(d), lrs[d])
            for d in s.depths for sw, keeps in _by_keep(s)]


def _frame(store_path, cfgs: Sequence) -> pd.DataFrame:
    """Stored rows of the networks these configs plan (empty frame when none)."""
    from deepprop.sweep.runner import plan
    from deepprop.sweep.store import Store

    keys = {j.key for c in cfgs for j in plan(c)}
    if not store_path.exists():
        return pd.DataFrame()
    with Store(store_path) as st:
        df = st.frame()
    return df[df["run_key"].isin(keys)].copy() if len(df) else df


def choose_lrs(s: SweepSpec, ctx: Context) -> tuple[dict[int, float], pd.DataFrame]:
    """Per depth, the rate of the grid with the highest mean accuracy of the search networks over the search
    budgets (a diverged network counts as chance; the smaller rate wins a tie); and the search table."""
    cfgs = search_configs(s, ctx)
    if not cfgs:
        return {d: s.lr_grid[0] for d in s.depths}, pd.DataFrame()
    df = _frame(ctx.work_dir / STORE, cfgs)
    chance = 0.1
    acc = df["train_accuracy"].where(~df["diverged"].astype(bool), chance).fillna(chance)
    table = df.assign(score=acc).groupby(["depth", "lr"], as_index=False)["score"].mean()
    lrs = {}
    for d in s.depths:
        g = table[table["depth"] == d].sort_values("lr")
        lrs[d] = float(g.loc[g["score"].idxmax(), "lr"]) if len(g) else s.lr_grid[0]
    return lrs, table


# ---- running ----------------------------------------------------------------------------------------------


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


_DATA: dict[tuple, Any] = {}


def _train(cfg, jobs: list, store: str) -> int:
    """Train ``jobs`` (rows of networks of one depth and one set of budgets, any learning rates and cells) in
    memory-sized chunks and commit each chunk's rows to ``store``; returns rows added. Runs in a worker process."""
    import torch

    from deepprop.sweep.runner import chunks_of, load_for, train_chunk
    from deepprop.sweep.store import Store

    key = (cfg.dataset, cfg.data_dir)
    if key not in _DATA:
        _DATA[key] = load_for(cfg)
    ds = _DATA[key]
    added = 0
    for chunk in chunks_of(jobs, cfg, ds.n_features, ds.n_classes, torch.device(cfg.device)):
        rows = train_chunk(cfg, chunk, ds, cfg.device)
        with Store(store) as st:
            added += st.add_results(rows)
    return added


def merged_jobs(cfgs: Sequence, store_path) -> list[tuple[Any, list]]:
    """The rows of ``cfgs`` missing from the store, grouped into trainings that can share one batched ensemble:
    the same depth, budgets and shared settings, whatever their learning rates, cells and seeds (each network
    keeps its own learning rate and random streams, so its rows do not depend on the company it trains in)."""
    import json

    from deepprop.sweep.runner import plan

    done = set(_frame(store_path, cfgs)["run_key"]) if store_path.exists() and len(cfgs) else set()
    groups: dict[str, tuple[Any, dict[str, Any]]] = {}
    for c in cfgs:
        shared = {k: v for k, v in c.to_dict().items() if k not in ("lr", "sigma_w2", "keep_rates", "seeds")}
        g = groups.setdefault(json.dumps(shared, sort_keys=True, default=str), (c, {}))
        for j in plan(c):
            if j.key not in done:
                g[1][j.key] = j
    return [(c, list(jobs.values())) for c, jobs in groups.values() if jobs]


def _cost(item: tuple[Any, list]) -> float:
    cfg, jobs = item
    nets = {j.spec for j in jobs}
    return float(len(nets) * max(j.budget for j in jobs) * cfg.depths[0] * (cfg.width / 32.0) ** 2)


def workers() -> int:
    """Worker processes for training: one per CPU this process may use (DEEPPROP_REPORT_WORKERS overrides)."""
    env = os.environ.get("DEEPPROP_REPORT_WORKERS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def run_configs(cfgs: Sequence, ctx: Context, label: str) -> None:
    """Train every missing row of ``cfgs`` into the report's store: merged trainings (:func:`merged_jobs`),
    largest first, in parallel worker processes of one torch thread each (CUDA: in this process)."""
    store = ctx.work_dir / STORE
    todo = sorted(merged_jobs(cfgs, store), key=_cost, reverse=True)
    if not todo:
        return
    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc=label, unit="job", disable=not ctx.progress, file=sys.stderr,
               dynamic_ncols=True)
    n = workers()
    if ctx.device != "cpu" or n == 1 or len(todo) == 1:
        for cfg, jobs in todo:
            _train(cfg, jobs, str(store))
            bar.update()
    else:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(max_workers=min(n, len(todo)), mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as pool:
            for fut in as_completed([pool.submit(_train, cfg, jobs, str(store)) for cfg, jobs in todo]):
                fut.result()
                bar.update()
    bar.close()


def ensure(ctx: Context, names: Iterable[str]) -> None:
    """Train the named sweeps of this tier: every learning-rate search first, then every grid."""
    specs = [spec(ctx, n) for n in dict.fromkeys(names)]
    run_configs([c for s in specs for c in search_configs(s, ctx)], ctx, "lr search")
    run_configs([c for s in specs for c in main_configs(s, ctx, choose_lrs(s, ctx)[0])], ctx, "trainability")


# ---- loading ----------------------------------------------------------------------------------------------


@dataclass
class Sweep:
    """A trained sweep: one row per network and budget (``networks``), theory scales per cell, the chosen
    learning rates and the search that chose them."""

    spec: SweepSpec
    networks: pd.DataFrame
    lrs: dict[int, float]
    search: pd.DataFrame
    n_classes: int
    dataset_note: str

    @property
    def chance(self) -> float:
        return 1.0 / self.n_classes

    def note(self) -> str:
        s = self.spec
        lr = ", ".join(f"L{d}: {v:g}" for d, v in sorted(self.lrs.items()))
        return (f"{self.dataset_note}; {s.activation}, sigma_b^2 {s.sigma_b2:g}, width {s.width}, depths "
                f"{list(s.depths)}, sigma_w^2 {list(s.sigma_w2) if not s.sw2_per_keep else f'{s.sw2_per_keep:g} rho'}, "
                f"keep rates {list(s.keep_rates)}, seeds {list(s.seeds)}, {s.optimizer} batch {s.batch_size}, "
                f"budgets {list(s.budgets)}" + (f" (depths > {s.long_depth} to {s.short_budget} steps)"
                                                  if s.long_depth < max(s.depths) else "")
                + f"; learning rate per depth by grid search over {list(s.lr_grid)} on sigma_w^2 "
                f"{s.search_sw2 if not s.sw2_per_keep else s.sw2_per_keep * s.search_keep:g} (seed {s.seeds[0]}, "
                f"budgets <= {max(s.search_budgets())}): {lr}; trained on the 'train' split, scored on "
                f"{s.eval_size} of its examples; cost {cost_text(self)}")


def cost_text(sw: Sweep) -> str:
    s = sw.spec
    main = sum(len(s.cells()) * len(s.seeds) * max(s.budgets_for(d)) for d in s.depths)
    search = len(s.depths) * len(s.lr_grid) * max(s.search_budgets()) if len(s.lr_grid) > 1 else 0
    layers = sum(len(s.cells()) * len(s.seeds) * max(s.budgets_for(d)) * d for d in s.depths)
    return (f"{main + search:,} network-steps ({main:,} grid + {search:,} learning-rate search; "
            f"{layers:,} layer-steps of the grid)")


def load(ctx: Context, name: str) -> Sweep:
    """Train (if needed) and read the sweep ``name`` with the theory's xi_c and xi_1 per cell."""
    from deepprop.sweep.analysis import theory_scales
    from deepprop.sweep.runner import load_for

    s = spec(ctx, name)
    ensure(ctx, [name])
    lrs, search = choose_lrs(s, ctx)
    cfgs = main_configs(s, ctx, lrs)
    df = _frame(ctx.work_dir / STORE, cfgs)
    ds = load_for(cfgs[0])
    parts = []
    for (keep, sb2), g in df.groupby(["keep_rate", "sigma_b2"]):
        sw = np.sort(g["sigma_w2"].unique())
        xi_c, xi_1 = theory_scales(s.activation, sw, float(sb2), float(keep))
        m = dict(zip(sw, zip(xi_c, xi_1, strict=True), strict=True))
        parts.append(g.assign(xi_c=[m[v][0] for v in g["sigma_w2"]], xi_1=[m[v][1] for v in g["sigma_w2"]]))
    df = pd.concat(parts, ignore_index=True) if parts else df
    from deepprop.report.context import LABELS

    note = LABELS.get(s.dataset, s.dataset) + (" standing in for MNIST" if s.dataset != "mnist" else "")
    return Sweep(s, df, lrs, search, int(ds.n_classes), note)


def heatmap_figures(ctx: Context, sw: Sweep, budgets: Sequence[int], keep: float | None = None,
                    tag: str = "") -> list[str]:
    """One accuracy heatmap per budget (keep rates side by side, or only ``keep``), with the n xi_c, 12 xi_c
    and 12 xi_1 curves; returns figure paths relative to OUT."""
    from deepprop.plots.sweep import plot_heatmap

    out = []
    for b in budgets:
        d = sw.networks[sw.networks["steps"] == b]
        if keep is not None:
            d = d[d["keep_rate"] == keep]
        if not len(d):
            continue
        path, rel = ctx.figure_path(f"{tag}steps-{b}")
        plot_heatmap(d, path, n_classes=sw.n_classes)
        out.append(rel)
    return out


def save_networks(ctx: Context, sw: Sweep, suffix: str = "") -> list[str]:
    """Every trained network (one row per budget) and the learning-rate search, as CSV."""
    cols = ["keep_rate", "depth", "sigma_w2", "seed", "steps", "lr", "train_accuracy", "test_accuracy",
            "diverged", "xi_c", "xi_1"]
    out = [ctx.save_csv(sw.networks[[c for c in cols if c in sw.networks.columns]], suffix)]
    if len(sw.search):
        out.append(ctx.save_csv(sw.search.rename(columns={"score": "mean_accuracy_over_search_budgets"}),
                                (suffix + "-" if suffix else "") + "lr-search"))
    return out

