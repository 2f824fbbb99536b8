"""Run a sweep: plan the networks not yet in the store, train them in batched chunks, commit each chunk.

Each network's random streams derive from its run identity (:func:`deepprop.sweep.config.run_key`), so
the result of a network does not depend on the order of execution, the chunking or the executor: a
sweep killed part-way and run again ends with the same table as an uninterrupted run.

Executors: ``local`` trains chunks one after the other in this process; ``ray`` submits each chunk as a
Ray task (on a worker's GPU when ``device`` is cuda) and the driver writes the results as tasks finish.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprop.data import Dataset, load_dataset
from deepprop.networks.ensemble import resolve_device
from deepprop.sweep.config import SweepConfig, run_identity, run_key, training_key
from deepprop.sweep.ensemble import (
    EnsembleResult,
    NetSpec,
    TrainSettings,
    bytes_per_network,
    is_oom,
    train_ensemble,
)
from deepprop.sweep.ray_cluster import connect_ray
from deepprop.sweep.schema import result_row
from deepprop.sweep.store import Store
from deepprop.validation import physical_memory_bytes

CPU_MEMORY_FRACTION = 0.25
CUDA_MEMORY_FRACTION = 0.7


@dataclass(frozen=True)
class Job:
    """One stored row to produce: its store key, identity and the spec of the network it scores.

    Rows of one network at several budgets share the spec (its seeds derive from the training key) and
    are produced by one training run.
    """

    key: str
    identity: dict
    spec: NetSpec

    @property
    def budget(self) -> int:
        return int(self.identity["steps"])


@dataclass
class SweepSummary:
    total: int
    already_done: int
    trained: int
    diverged: int
    wall_s: float
    network_steps: int
    flops: float

    def text(self) -> str:
        rate = self.network_steps / self.wall_s if self.wall_s > 0 else float("nan")
        return (
            f"sweep: {self.trained} networks trained ({self.diverged} diverged), {self.already_done} already "
            f"in the store, {self.already_done + self.trained}/{self.total} done; {self.wall_s:.1f} s, "
            f"{rate:,.0f} network-steps/s, {self.flops / max(self.wall_s, 1e-9) / 1e9:.2f} GFLOP/s"
        )


def plan(cfg: SweepConfig) -> list[Job]:
    """Every row of the sweep, ordered by depth then sigma_w2, keep_rate, seed, budget."""
    jobs = []
    for depth in sorted(cfg.depths):
        for sw2 in cfg.sigma_w2:
            for keep in cfg.keep_rates:
                for seed in cfg.seeds:
                    for steps in cfg.budgets:
                        ident = run_identity(cfg, depth, sw2, keep, seed, steps)
                        net = training_key(ident)
                        spec = NetSpec(
                            sigma_w2=ident["sigma_w2"],
                            sigma_b2=cfg.sigma_b2,
                            lr=ident["lr"],
                            seed=int(seed),
                            init_seed=int(net[:12], 16),
                            noise_key=int(net[12:20], 16),
                            keep_rate=ident["keep_rate"],
                            noise_mult=cfg.noise_mult,
                            noise_add=cfg.noise_add,
                        )
                        jobs.append(Job(run_key(ident), ident, spec))
    return jobs


def settings_for(cfg: SweepConfig, depth: int, budgets: Sequence[int] | None = None) -> TrainSettings:
    """Training settings of one depth; ``budgets`` (default: the sweep's) are the steps scored."""
    budgets = sorted(set(cfg.budgets if budgets is None else budgets))
    return TrainSettings(
        depth=int(depth),
        width=cfg.width,
        activation=cfg.activation,
        weights=cfg.weights,
        optimizer=cfg.optimizer,
        steps=budgets[-1],
        eval_steps=tuple(budgets[:-1]),
        batch_size=cfg.batch_size,
        dtype=cfg.dtype,
        precision=cfg.precision,
        eval_train=cfg.eval_train,
        eval_test=cfg.eval_test,
    )


def memory_budget(device: torch.device) -> int:
    """Bytes a chunk may use: a fraction of free GPU memory, or of physical RAM on the CPU."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * CUDA_MEMORY_FRACTION)
    return int(physical_memory_bytes() * CPU_MEMORY_FRACTION)


def networks_of(jobs: Sequence[Job]) -> dict[NetSpec, list[Job]]:
    """The jobs grouped by the network that produces them (one training run each), in order."""
    nets: dict[NetSpec, list[Job]] = {}
    for j in jobs:
        nets.setdefault(j.spec, []).append(j)
    return nets


def chunks_of(
    jobs: Sequence[Job], cfg: SweepConfig, n_in: int, n_out: int, device: torch.device
) -> list[list[Job]]:
    """Split jobs by depth, then into chunks of at most ``chunk_size`` networks (or what fits the memory
    budget); the rows of one network at several budgets stay in one chunk."""
    by_depth: dict[int, list[Job]] = {}
    for j in jobs:
        by_depth.setdefault(j.identity["depth"], []).append(j)
    out = []
    budget = memory_budget(device) if cfg.chunk_size is None else 0
    for depth, group in sorted(by_depth.items()):
        if cfg.chunk_size is not None:
            size = cfg.chunk_size
        else:
            size = max(1, budget // bytes_per_network(settings_for(cfg, depth), n_in, n_out))
        nets = list(networks_of(group).values())
        out.extend([j for net in nets[i : i + size] for j in net] for i in range(0, len(nets), size))
    return out


def _to_device(ds: Dataset, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    return (
        torch.from_numpy(ds.x_train).to(device=device, dtype=dtype),
        torch.from_numpy(ds.y_train).to(device),
        torch.from_numpy(ds.x_test).to(device=device, dtype=dtype),
        torch.from_numpy(ds.y_test).to(device),
    )


def train_chunk(
    cfg: SweepConfig,
    jobs: Sequence[Job],
    ds: Dataset,
    device: str | torch.device,
    tensors: tuple | None = None,
) -> list[dict[str, Any]]:
    """Train one chunk (all of one depth) once, to its largest budget, and return a store row per job;
    on out-of-memory, halve and retry."""
    device = torch.device(device)
    if tensors is None:
        tensors = _to_device(ds, device, getattr(torch, cfg.dtype))
    nets = networks_of(jobs)
    settings = settings_for(cfg, jobs[0].identity["depth"], [j.budget for j in jobs])
    t0 = time.perf_counter()
    try:
        res = train_ensemble(list(nets), settings, *tensors, ds.n_classes)
    except Exception as exc:  # noqa: BLE001 - only OOM is handled, everything else re-raised
        if not is_oom(exc) or len(nets) == 1:
            raise
        del exc
        if device.type == "cuda":
            torch.cuda.empty_cache()
        groups = list(nets.values())
        half = len(groups) // 2
        print(f"sweep: out of memory with {len(groups)} networks; retrying as 2 x {half}", file=sys.stderr)
        first = [j for g in groups[:half] for j in g]
        second = [j for g in groups[half:] for j in g]
        return train_chunk(cfg, first, ds, device, tensors) + train_chunk(cfg, second, ds, device, tensors)
    wall = time.perf_counter() - t0
    return rows_from(jobs, res, wall, str(device))


def rows_from(jobs: Sequence[Job], res: EnsembleResult, wall: float, device: str) -> list[dict[str, Any]]:
    """One store row per job, read from the result's column of its network and row of its budget; the
    wall time and work of the chunk are shared equally among its rows."""
    column = {spec: k for k, spec in enumerate(networks_of(jobs))}
    rows = []
    for j in jobs:
        k, b = column[j.spec], res.budgets.index(j.budget)
        rows.append(result_row(
            j.key, j.identity, train_accuracy=res.train_accuracy_at[b, k], test_accuracy=res.test_accuracy_at[b, k],
            final_loss=res.loss_at[b, k], diverged=res.diverged_at[b, k], diverged_step=res.diverged_step_at[b, k],
            device=device, wall_s=wall / len(jobs), network_steps=res.network_steps / len(jobs),
            flops=res.flops / len(jobs),
        ))
    return rows


# ---- executors ------------------------------------------------------------------------------------------


def local_executor(cfg: SweepConfig, chunks: Sequence[list[Job]], ds: Dataset) -> Iterator[list[dict]]:
    device = torch.device(cfg.device)
    tensors = _to_device(ds, device, getattr(torch, cfg.dtype))
    for chunk in chunks:
        yield train_chunk(cfg, chunk, ds, device, tensors)


def _ray_task(cfg: SweepConfig, jobs: list[Job], ds: Dataset) -> list[dict]:
    device = cfg.device if cfg.device == "cpu" or torch.cuda.is_available() else "cpu"
    return train_chunk(cfg, jobs, ds, device)


def ray_executor(cfg: SweepConfig, chunks: Sequence[list[Job]], ds: Dataset) -> Iterator[list[dict]]:
    """Each chunk is one Ray task; results are yielded as tasks finish (the driver writes the store)."""
    import ray

    started = connect_ray(cfg.ray_address)  # a no-op when run_sweep (or the CLI) connected first
    try:
        gpus = 1 if cfg.device.startswith("cuda") else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=2)(_ray_task)
        ds_ref = ray.put(ds)
        pending = [task.remote(cfg, chunk, ds_ref) for chunk in chunks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started:
            ray.shutdown()


EXECUTORS: dict[str, Callable[..., Iterator[list[dict]]]] = {"local": local_executor, "ray": ray_executor}


def load_for(cfg: SweepConfig) -> Dataset:
    return load_dataset(cfg.dataset, cfg.data_dir, n_train=cfg.n_train, n_test=cfg.n_test)


def run_sweep(
    cfg: SweepConfig,
    store_path: str | Path,
    *,
    progress: bool = True,
    dataset: Dataset | None = None,
) -> SweepSummary:
    """Train every network of ``cfg`` missing from the store at ``store_path``; commit each chunk's rows."""
    resolve_device(cfg.device)
    t0 = time.perf_counter()
    jobs = plan(cfg)
    started_ray = connect_ray(cfg.ray_address) if cfg.executor == "ray" else False  # before any bar or row
    try:
        return _run_sweep(cfg, store_path, jobs, t0, progress, dataset)
    finally:
        if started_ray:
            import ray

            ray.shutdown()


def _run_sweep(cfg: SweepConfig, store_path: str | Path, jobs: list[Job], t0: float, progress: bool,
               dataset: Dataset | None) -> SweepSummary:
    with Store(store_path) as store:
        store.set_meta("config", cfg.to_dict())
        store.set_meta("planned_keys", [j.key for j in jobs])
        done = store.done_keys()
        todo = [j for j in jobs if j.key not in done]
        already = len(jobs) - len(todo)
        summary = SweepSummary(len(jobs), already, 0, 0, 0.0, 0, 0.0)
        if not todo:
            summary.wall_s = time.perf_counter() - t0
            return summary
        ds = dataset if dataset is not None else load_for(cfg)
        chunks = chunks_of(todo, cfg, ds.n_features, ds.n_classes, torch.device(cfg.device))
        from tqdm import tqdm

        bar = tqdm(
            total=len(jobs),
            initial=already,
            unit="net",
            file=sys.stderr,
            disable=not progress,
            desc="sweep",
            dynamic_ncols=True,
        )
        try:
            for rows in EXECUTORS[cfg.executor](cfg, chunks, ds):
                store.add_results(rows)
                summary.trained += len(rows)
                summary.diverged += sum(r["diverged"] for r in rows)
                summary.network_steps += int(sum(r["network_steps"] for r in rows))
                summary.flops += float(sum(r["flops"] for r in rows))
                best = np.nanmax([r["train_accuracy"] for r in rows] + [np.nan]) if rows else np.nan
                bar.set_postfix(depth=rows[0]["depth"], best_acc=f"{best:.3f}", refresh=False)
                bar.update(len(rows))
        finally:
            bar.close()
    summary.wall_s = time.perf_counter() - t0
    return summary


def status(store_path: str | Path) -> dict[str, Any]:
    """done/total of the store's last planned sweep, and counts of diverged runs."""
    with Store(store_path, create=False) as store:
        planned = store.get_meta("planned_keys", [])
        done_keys = store.done_keys()
        df = store.frame()
    done = len(set(planned) & done_keys)
    return {
        "done": done,
        "total": len(planned),
        "rows": len(df),
        "diverged": int(df["diverged"].sum()),
        "config": store_config(store_path),
    }


def store_config(store_path: str | Path) -> dict[str, Any] | None:
    """The configuration of the last sweep run on this store (as a plain dict), or None."""
    with Store(store_path, create=False) as store:
        return store.get_meta("config")
