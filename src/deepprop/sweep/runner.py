"""Run a sweep: plan the networks not yet in the store, train them in batched chunks, commit each chunk.

Each network's random streams derive from its run identity (:func:`deepprop.sweep.config.run_key`), so
the result of a network does not depend on the order of execution, the chunking or the executor: a
sweep killed part-way and run again ends with the same table as an uninterrupted run.

Executors: ``local`` trains chunks one after the other in this process; ``ray`` submits each chunk as a
Ray task (on a worker's GPU when ``device`` is cuda) and the driver writes the results as tasks finish.
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deepprop.data import Dataset, load_dataset
from deepprop.sweep.config import SweepConfig, run_identity, run_key, training_key
from deepprop.sweep.ensemble import (
    EnsembleResult,
    NetSpec,
    TrainSettings,
    bytes_per_network,
    is_oom,
    train_ensemble,
)
from deepprop.sweep.ray_cluster import check_ray, ray_connection
from deepprop.sweep.schema import result_row
from deepprop.sweep.store import Store, create_store, holds_no_store, renew_leases, this_owner
from deepprop.validation import (
    array_bytes,
    check_memory,
    check_memory_terms,
    check_output_path,
    check_positive,
    physical_memory_bytes,
    resolve_device,
    user_path,
)

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
    by_others: int = 0  # networks of this sweep that other runners on the same store trained meanwhile

    def text(self) -> str:
        rate = self.network_steps / self.wall_s if self.wall_s > 0 else float("nan")
        return (
            f"sweep: {self.trained} networks trained ({self.diverged} diverged), {self.already_done} already "
            f"in the store{f', {self.by_others} by another runner' if self.by_others else ''}, "
            f"{self.already_done + self.trained + self.by_others}/{self.total} done; {self.wall_s:.1f} s, "
            f"{rate:,.0f} network-steps/s, {self.flops / max(self.wall_s, 1e-9) / 1e9:.2f} GFLOP/s"
        )


def plan(cfg: SweepConfig) -> list[Job]:
    """Every row of the sweep, ordered by depth then sigma_w2, keep_rate, seed, budget."""
    jobs = []
    base = cfg.prior_numbers()  # the sweep's prior; each network replaces sigma_w2 and keep_rate with its cell's
    for depth in sorted(cfg.depths):
        for sw2 in cfg.sigma_w2:
            for keep in cfg.keep_rates:
                for seed in cfg.seeds:
                    for steps in cfg.budgets:
                        ident = run_identity(cfg, depth, sw2, keep, seed, steps)
                        net = training_key(ident)
                        spec = NetSpec(
                            **{**base, "sigma_w2": ident["sigma_w2"], "keep_rate": ident["keep_rate"]},
                            lr=ident["lr"],
                            seed=int(seed),
                            init_seed=int(net[:12], 16),
                            noise_key=int(net[12:20], 16),
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

    with ray_connection(cfg.ray_address):  # a no-op when run_sweep connected first
        gpus = 1 if cfg.device.startswith("cuda") else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=2)(_ray_task)
        ds_ref = ray.put(ds)
        pending = [task.remote(cfg, chunk, ds_ref) for chunk in chunks]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                yield ray.get(ref)


EXECUTORS: dict[str, Callable[..., Iterator[list[dict]]]] = {"local": local_executor, "ray": ray_executor}


def load_for(cfg: SweepConfig) -> Dataset:
    return load_dataset(cfg.dataset, cfg.data_dir, n_train=cfg.n_train, n_test=cfg.n_test)


# ---- checks before anything is written -------------------------------------------------------------------

JOB_BYTES = 4096
"""Memory one planned network takes before training (its identity dict, key and spec; measured ~2 kB)."""


LAYER_OVERHEAD_BYTES = 4096
"""Bookkeeping of one layer in one training step beyond its arrays (autograd nodes, tensor headers): what
makes a very deep, very narrow network cost more than its weights and activations."""


def network_memory(cfg: SweepConfig, n_in: int, n_out: int, n_train: int) -> tuple[dict[str, int], str]:
    """({option: bytes}, description) of training ONE network of the sweep's largest depth: parameters with
    their gradients and optimizer state (``width``), activations of a mini-batch (``batch_size``), the
    mini-batch index table (``steps`` x ``batch_size``), per-layer bookkeeping (``depths``) and the training
    data on the device (``n_train``)."""
    depth = max(cfg.depths)
    settings = settings_for(cfg, depth)
    itemsize = 8 if cfg.dtype == "float64" else 4
    total = bytes_per_network(settings, n_in, n_out)
    acts = 4 * settings.batch_size * (cfg.width * depth + n_in + n_out) * itemsize  # as bytes_per_network
    table = 2 * array_bytes((settings.steps, settings.batch_size))  # drawn in numpy, then a tensor
    # activations grow with batch x width x depth: charged to the one furthest above its default size
    stretch = {"batch_size": settings.batch_size / 128, "width": cfg.width / 300, "depths": depth / 300}
    terms = {"width": max(total - acts, 0), "batch_size": 0, "steps": 0, "depths": depth * LAYER_OVERHEAD_BYTES,
             "n_train": array_bytes((n_train, n_in), itemsize=itemsize)}
    terms[max(stretch, key=lambda k: stretch[k])] += acts
    terms["steps" if settings.steps > settings.batch_size else "batch_size"] += table
    what = (f"training one network of depth {depth} (width {cfg.width}, batch {settings.batch_size}, "
            f"{settings.steps} steps)")
    return terms, what


def prepare_sweep(cfg: SweepConfig, store_path: str | Path, dataset: Dataset | None = None, *,
                  same_sweep: bool = False) -> Dataset:
    """Everything that can fail before training, checked before the store is created or written: the size
    of the plan, the device, the store (a readable deepprop store of this version, or a new file in an
    existing folder; with ``same_sweep``, one whose last sweep has the same shared settings), the dataset,
    the memory one network needs, and Ray (installed, cluster reachable). Returns the dataset."""
    from deepprop.sweep.schema import SHARED_IDENTITY

    check_memory("depths", cfg.n_networks * JOB_BYTES, f"planning a sweep of {cfg.n_networks} networks",
                 "use smaller --depths / --sigma-w2 / --seed grids")
    resolve_device(cfg.device)
    path = Path(store_path)
    if path.exists() and (path.is_dir() or path.stat().st_size > 0):
        with Store(path, create=False) as store:
            if same_sweep:
                store.check_config(cfg.to_dict(), SHARED_IDENTITY)
    else:
        check_output_path(path, param="store")
    ds = dataset if dataset is not None else load_for(cfg)
    terms, what = network_memory(cfg, ds.n_features, ds.n_classes, len(ds.y_train))
    check_memory_terms(terms, what, device=cfg.device)
    if cfg.executor == "ray":
        check_ray(cfg.ray_address)  # installed and answering; run_sweep connects
    return ds


# ---- running: leases shared with other runners on the same store ------------------------------------------

LEASE_SECONDS = 60.0
"""How long a runner's claim on a chunk lasts without renewal. A runner renews its leases every third of
this while it trains; a runner that is killed stops renewing, and on the same host its leases are free at
once (its process is gone)."""
WAIT_POLL_SECONDS = 1.0


class _Heartbeat:
    """Renews this runner's leases from a thread of its own (training holds the main thread for minutes)."""

    def __init__(self, path: Path, seconds: float):
        self.path, self.seconds = path, seconds
        self.held: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deepprop-lease-heartbeat", daemon=True)

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def add(self, lease: str) -> None:
        with self._lock:
            self.held.add(lease)

    def drop(self, lease: str) -> None:
        with self._lock:
            self.held.discard(lease)

    def _run(self) -> None:
        import sqlite3

        conn = sqlite3.connect(str(self.path), timeout=60.0)
        try:
            while not self._stop.wait(self.seconds / 3):
                with self._lock:
                    ids = list(self.held)
                if not ids:
                    continue
                try:
                    renew_leases(conn, ids, self.seconds)
                except sqlite3.Error:  # busy for a minute: the next beat tries again
                    pass
        finally:
            conn.close()


def run_sweep(
    cfg: SweepConfig,
    store_path: str | Path,
    *,
    progress: bool = True,
    dataset: Dataset | None = None,
    lease_seconds: float = LEASE_SECONDS,
    same_sweep: bool = False,
) -> SweepSummary:
    """Train every network of ``cfg`` missing from the store at ``store_path``; commit each chunk's rows.

    Every check (:func:`prepare_sweep`) runs before the store is created or written; with ``progress``, a
    header line and a bar on stderr follow. Several runners may
    work on one store at once: each trains only the chunks it leased (``lease_seconds``), waits for the
    chunks others hold, and takes over those whose runner is gone. With ``same_sweep`` (the command line)
    a store that holds another sweep (different shared settings) is refused; the library may keep several
    sweeps in one store (rows are keyed by their full identity)."""
    lease_seconds = check_positive("lease_seconds", lease_seconds)
    t0 = time.perf_counter()
    ds = prepare_sweep(cfg, store_path, dataset, same_sweep=same_sweep)
    if progress:  # after every check: a refused sweep prints nothing but its one-line error
        print(f"sweep: {cfg.n_networks} networks ({len(cfg.depths)} depths x {len(cfg.sigma_w2)} sigma_w2 x "
              f"{len(cfg.keep_rates)} keep rates x {len(cfg.seeds)} seeds) on {cfg.dataset}, {cfg.device}, "
              f"executor {cfg.executor}; store {store_path}", file=sys.stderr)
    jobs = plan(cfg)
    with ray_connection(cfg.ray_address, enabled=cfg.executor == "ray"):  # before any bar or row
        return _run_sweep(cfg, store_path, jobs, t0, progress, ds, lease_seconds, same_sweep)


def _claimed_chunks(store: Store, chunks: Iterable[list[Job]], owner: str, beat: _Heartbeat, seconds: float,
                    lease_of: dict[str, str]) -> Iterator[list[Job]]:
    """The chunks this runner leases, one claim per chunk as the executor asks for the next one (jobs done
    or leased by another runner meanwhile are left out; a chunk left empty is skipped)."""
    for chunk in chunks:
        lease = uuid.uuid4().hex
        got = set(store.claim([j.key for j in chunk], lease, owner, seconds))
        if not got:
            continue
        beat.add(lease)
        for key in got:
            lease_of[key] = lease
        yield [j for j in chunk if j.key in got]


def _run_sweep(cfg: SweepConfig, store_path: str | Path, jobs: list[Job], t0: float, progress: bool,
               ds: Dataset, lease_seconds: float, same_sweep: bool) -> SweepSummary:
    from deepprop.sweep.schema import SHARED_IDENTITY

    path = user_path(store_path, "store")
    if holds_no_store(path):
        create_store(path)  # its path was checked by prepare_sweep: once, before any work
    with Store(path, create=False) as store:
        store.start_sweep(cfg.to_dict(), SHARED_IDENTITY if same_sweep else (), [j.key for j in jobs],
                          prior=cfg.prior_record())
        planned = {j.key for j in jobs}
        already = len(planned & store.done_keys())
        summary = SweepSummary(len(jobs), already, 0, 0, 0.0, 0, 0.0)
        if already == len(jobs):
            summary.wall_s = time.perf_counter() - t0
            return summary
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), initial=already, unit="net", file=sys.stderr, disable=not progress,
                   desc="sweep", dynamic_ncols=True)
        owner = this_owner()
        lease_of: dict[str, str] = {}
        try:
            with _Heartbeat(store.path, lease_seconds) as beat:
                while True:
                    done = planned & store.done_keys()
                    bar.n = len(done)
                    todo = [j for j in jobs if j.key not in done]
                    if not todo:
                        break
                    chunks = chunks_of(todo, cfg, ds.n_features, ds.n_classes, torch.device(cfg.device))
                    claimed = _claimed_chunks(store, chunks, owner, beat, lease_seconds, lease_of)
                    trained_now = 0
                    for rows in EXECUTORS[cfg.executor](cfg, claimed, ds):
                        lease = lease_of.get(rows[0]["run_key"]) if rows else None
                        store.add_results(rows, release=lease)
                        if lease is not None:
                            beat.drop(lease)
                        trained_now += len(rows)
                        summary.trained += len(rows)
                        summary.diverged += sum(r["diverged"] for r in rows)
                        summary.network_steps += int(sum(r["network_steps"] for r in rows))
                        summary.flops += float(sum(r["flops"] for r in rows))
                        accs = [r["train_accuracy"] for r in rows if np.isfinite(r["train_accuracy"])]
                        bar.set_postfix(depth=rows[0]["depth"], best_acc=f"{max(accs, default=np.nan):.3f}",
                                        refresh=False)
                        bar.update(len(rows))
                    if trained_now == 0:  # every chunk left is leased by another live runner: wait for it
                        bar.set_postfix_str("waiting for chunks another runner holds", refresh=True)
                        time.sleep(min(WAIT_POLL_SECONDS, lease_seconds / 4))
        finally:
            bar.close()
            for lease in set(lease_of.values()):  # give back what was claimed but not finished (an error)
                try:
                    store.release(lease)
                except Exception:  # noqa: BLE001 - best effort: the lease expires anyway
                    pass
        summary.by_others = max(len(planned & store.done_keys()) - already - summary.trained, 0)
    summary.wall_s = time.perf_counter() - t0
    return summary


CellKey = tuple[int, float, float]
"""(depth, sigma_w2, keep_rate) of a grid cell, as the store's rows hold them."""


def incomplete_cells(config: dict[str, Any] | None, done_keys: set[str]) -> set[CellKey] | None:
    """Cells of the store's last planned sweep that still miss networks, from its stored configuration
    (None when the configuration cannot be read back into a plan)."""
    from deepprop.errors import DeeppropError
    from deepprop.sweep.config import from_mapping

    if not config:
        return None
    try:
        jobs = plan(from_mapping(config))
    except (DeeppropError, TypeError, ValueError, KeyError):
        return None
    return {(int(j.identity["depth"]), float(j.identity["sigma_w2"]), float(j.identity["keep_rate"]))
            for j in jobs if j.key not in done_keys}


def status(store_path: str | Path) -> dict[str, Any]:
    """done/total of the store's last planned sweep, counts of diverged runs, the networks being trained
    now (leased by live runners) and the grid cells still missing networks."""
    with Store(store_path, create=False) as store:
        planned = store.get_meta("planned_keys", [])
        done_keys = store.done_keys()
        df = store.frame()
        runners = store.active_leases()
        config = store.get_meta("config")
    done = len(set(planned) & done_keys)
    missing = incomplete_cells(config, done_keys)
    return {
        "done": done,
        "total": len(planned),
        "complete": bool(planned) and done == len(planned),
        "in_progress": int(sum(runners.values())),
        "runners": len(runners),
        "incomplete_cells": None if missing is None else len(missing),
        "rows": len(df),
        "diverged": int(df["diverged"].sum()),
        "config": config,
    }


def store_prior(store_path: str | Path) -> dict[str, Any] | None:
    """The network of the last sweep run on this store, ``{"base": NetworkPrior record, "axes": {sigma_w2,
    keep_rate}}`` (:meth:`SweepConfig.prior_record`), or None. A store written before the prior was recorded
    gives the same, read from its configuration."""
    from deepprop.errors import DeeppropError
    from deepprop.sweep.config import from_mapping

    with Store(store_path, create=False) as store:
        prior, config = store.get_meta("prior"), store.get_meta("config")
    if prior is not None or not config:
        return prior
    try:
        return from_mapping(config).prior_record()
    except (DeeppropError, TypeError, ValueError, KeyError):
        return None


def store_config(store_path: str | Path) -> dict[str, Any] | None:
    """The configuration of the last sweep run on this store (as a plain dict), or None."""
    with Store(store_path, create=False) as store:
        return store.get_meta("config")
