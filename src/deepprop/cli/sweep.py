"""``deepprop sweep run|status|plot|fit|export``: trainability sweeps over (depth, sigma_w2).

deepprop sweep run [CONFIG.toml] [--preset NAME [--full]] --store FILE [--executor local|ray]
    [--device cpu|cuda] [--dataset digits] [--activation tanh] [--sigma-b2 0.05] [--keep-rate R]
    [--width 300] [--depths 10:300:30] [--sigma-w2 1:4:31] [--optimizer sgd] [--lr 1e-3|paper]
    [--steps 200] [--batch-size 128] [--seed S]
deepprop sweep status STORE [--json]
deepprop sweep plot STORE --out heatmap.png
deepprop sweep fit STORE [--threshold T] [--json]
deepprop sweep export STORE --out FILE.csv|.parquet [--json]

--executor ray --ray-address HOST:PORT runs each chunk as a task on an existing Ray cluster (see README).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from deepprop.cli import common
from deepprop.errors import ParameterError
from deepprop.sweep.ray_cluster import connect_ray
from deepprop.validation import check_memory

# flag -> config key; flags left unset do not override the config file or preset
RUN_FLAGS: dict[str, tuple[str, type, str]] = {
    "--dataset": ("dataset", str, "digits | fashion-mnist | mnist | cifar10 | synthetic (default digits)"),
    "--data-dir": ("data_dir", str, "directory with the dataset files"),
    "--n-train": ("n_train", int, "use a random subset of this many training examples"),
    "--n-test": ("n_test", int, "use a random subset of this many test examples"),
    "--activation": ("activation", str, "nonlinearity (default tanh)"),
    "--sigma-b2": ("sigma_b2", float, "bias variance (default 0.05)"),
    "--keep-rate": ("keep_rates", str, "dropout KEEP probability(ies), e.g. 0.99 or 0.99,0.98 (default 1)"),
    "--noise-mult": ("noise_mult", float, "std of multiplicative Gaussian noise N(1, s^2) (default 0)"),
    "--noise-add": ("noise_add", float, "std of additive Gaussian noise (default 0)"),
    "--weights": ("weights", str, "gaussian | orthogonal (default gaussian)"),
    "--width": ("width", int, "hidden width N (default 300)"),
    "--depths": ("depths", str, "depth grid: start:stop:count (inclusive) or a,b,c"),
    "--sigma-w2": ("sigma_w2", str, "sigma_w^2 grid: start:stop:count (inclusive) or a,b,c"),
    "--optimizer": ("optimizer", str, "sgd | rmsprop (default sgd)"),
    "--lr": ("lr", str, "learning rate, or 'paper' (1e-3 below depth 200, 1e-4 above; RMSProp 1e-5)"),
    "--steps": ("steps", int, "training steps (default 200)"),
    "--batch-size": ("batch_size", int, "mini-batch size (default 128)"),
    "--seed": ("seeds", str, "seed(s): S, a,b,c or start:stop:count (default 0)"),
    "--device": ("device", str, "cpu | cuda (default cpu)"),
    "--dtype": ("dtype", str, "float32 | float64 (default float32)"),
    "--precision": ("precision", str, "fp32 | tf32 | bf16 (faster modes are opt-in; default fp32)"),
    "--chunk-size": ("chunk_size", int, "networks per batched chunk (default: what fits in memory)"),
    "--eval-train": (
        "eval_train",
        int,
        "training examples used for the final train accuracy (default 10000)",
    ),
    "--executor": ("executor", str, "local | ray (default local)"),
    "--ray-address": ("ray_address", str, "address of a running Ray cluster (default: start a local one)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="train grids of deep networks and test the trainable-depth laws",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ssub = p.add_subparsers(dest="sweep_command", metavar="SUBCOMMAND", parser_class=type(p))
    ssub.required = True

    run = ssub.add_parser("run", help="run (or resume) a sweep")
    run.add_argument("config", nargs="?", help="TOML file describing the sweep")
    run.add_argument("--preset", help="paper setting: fig5a | fig6 (reduced size unless --full)")
    run.add_argument("--full", action="store_true", help="with --preset: the paper's size (for a GPU)")
    run.add_argument("--store", required=True, help="SQLite file for the results (resumed if it exists)")
    common.add_quiet(run)
    for flag, (key, typ, help_) in RUN_FLAGS.items():
        run.add_argument(flag, dest=f"cfg_{key}", type=typ, default=None, help=help_,
                         metavar=flag[2:].upper().replace("-", "_"))
    run.set_defaults(func=_run)

    st = ssub.add_parser("status", help="done/total of a store's sweep")
    st.add_argument("store")
    common.add_json(st)
    st.set_defaults(func=_status)

    pl = ssub.add_parser("plot", help="heatmap of accuracy over (sigma_w2, depth) with xi_c overlays")
    pl.add_argument("store")
    pl.add_argument("--out", required=True, help="PNG file")
    pl.add_argument("--metric", default="train_accuracy", choices=["train_accuracy", "test_accuracy"])
    pl.set_defaults(func=_plot)

    ft = ssub.add_parser("fit", help="fit trainable-depth laws L_max = a xi_c, min(a xi_c, b xi_1)")
    ft.add_argument("store")
    ft.add_argument(
        "--threshold",
        type=common.fraction,
        default=None,
        help="accuracy counted as trainable (default: halfway between chance and the best cell)",
    )
    ft.add_argument("--metric", default="train_accuracy", choices=["train_accuracy", "test_accuracy"])
    common.add_json(ft)
    ft.set_defaults(func=_fit)

    ex = ssub.add_parser("export", help="one row per trained network to CSV or parquet")
    ex.add_argument("store")
    ex.add_argument("--out", required=True, help="FILE.csv or FILE.parquet")
    common.add_json(ex, "print a JSON summary (path, rows) instead of text")
    ex.set_defaults(func=_export)


def build_config(args: argparse.Namespace) -> Any:
    """Preset, then TOML file, then flags, each overriding the one before; validated.

    An error inside the TOML file names the file and the key (``config: sweep.toml: key 'widht': ...``)."""
    from deepprop.sweep.config import from_mapping, load_toml, preset_config

    if args.full and not args.preset:
        raise ParameterError("full", "needs --preset")
    base = preset_config(args.preset, full=args.full) if args.preset else None
    if args.config:
        try:
            base = load_toml(args.config, base)
        except ParameterError as exc:
            if exc.param == "config":
                raise
            raise ParameterError("config", f"{args.config}: key {exc.param!r}: {exc.detail}") from exc
    overrides = {key: getattr(args, f"cfg_{key}") for _, (key, _, _) in RUN_FLAGS.items()}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return from_mapping(overrides, base)


JOB_BYTES = 4096
"""Memory one planned network takes before training (its identity dict, key and spec; measured ~2 kB)."""


def preflight(cfg: Any, store_path: str) -> Any:
    """Everything that can fail before training, checked before the store or the progress bar is touched:
    the sweep's size, the device, the store (a deepprop store of the same sweep settings), the dataset,
    and Ray (installed, cluster reachable). Returns the loaded dataset."""
    from deepprop.sweep.runner import load_for
    from deepprop.sweep.schema import SHARED_IDENTITY
    from deepprop.sweep.store import Store

    check_memory("depths", cfg.n_networks * JOB_BYTES, f"a sweep of {cfg.n_networks} networks",
                        "use smaller --depths / --sigma-w2 / --seed grids")
    common.check_device(cfg.device)
    if Path(store_path).exists():  # refused before any write if not a deepprop store; may be one being created
        with Store(store_path) as store:
            store.check_config(cfg.to_dict(), SHARED_IDENTITY)
    else:
        from deepprop.paths import check_output_path

        check_output_path(store_path, param="store")
    ds = load_for(cfg)
    if cfg.executor == "ray":
        connect_ray(cfg.ray_address)
    return ds


def _run(args: argparse.Namespace) -> int:
    from deepprop.sweep.runner import run_sweep

    cfg = build_config(args)
    ds = preflight(cfg, args.store)
    if common.progress(args):
        print(
            f"sweep: {cfg.n_networks} networks ({len(cfg.depths)} depths x {len(cfg.sigma_w2)} sigma_w2 x "
            f"{len(cfg.keep_rates)} keep rates x {len(cfg.seeds)} seeds) on {cfg.dataset}, {cfg.device}, "
            f"executor {cfg.executor}; store {args.store}",
            file=sys.stderr,
        )
    try:
        summary = run_sweep(cfg, args.store, progress=common.progress(args), dataset=ds)
    finally:
        if cfg.executor == "ray":
            import ray

            ray.shutdown()
    print(summary.text())
    return 0


def _status(args: argparse.Namespace) -> int:
    from deepprop.sweep.runner import status

    s = status(args.store)
    if args.json:
        common.print_json({"store": args.store, **s})
        return 0
    print(f"{s['done']}/{s['total']} done ({s['diverged']} diverged, {s['rows']} rows in store)")
    return 0


def _frame(path: str):
    from deepprop.sweep.store import Store

    with Store(path, create=False) as store:
        df = store.frame()
    if df.empty:
        raise ParameterError("store", f"{path} has no results yet")
    return df


def _n_classes(path: str) -> int:
    from deepprop.data import classes_of
    from deepprop.sweep.runner import store_config

    cfg = store_config(path) or {}
    return classes_of(cfg.get("dataset", "digits"))


def _plot(args: argparse.Namespace) -> int:
    from deepprop.paths import check_output_path

    out = check_output_path(args.out, suffixes=(".png", ".pdf", ".svg"))
    df = _frame(args.store)
    common.headless_plots()
    from deepprop.sweep.analysis import plot_heatmap

    out = plot_heatmap(df, out, metric=args.metric, n_classes=_n_classes(args.store))
    print(f"wrote {out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from deepprop.sweep.analysis import fit_laws

    fits, cells, thr = fit_laws(
        _frame(args.store), threshold=args.threshold, n_classes=_n_classes(args.store), metric=args.metric
    )
    n_trainable = int(cells["trainable"].sum())
    if args.json:
        common.print_json({"store": args.store, "metric": args.metric, "threshold": thr,
                           "trainable_cells": n_trainable, "cells": len(cells),
                           "fits": fits})
        return 0
    print(f"trainable: mean {args.metric} >= {thr:.3f}; {n_trainable}/{len(cells)} cells")
    for f in fits:
        print(f.line())
    return 0


def _export(args: argparse.Namespace) -> int:
    from deepprop.paths import check_output_path
    from deepprop.sweep.analysis import export

    check_output_path(args.out, suffixes=(".csv", ".parquet", ".pq"))
    df = _frame(args.store)
    out = export(df, args.out)
    if args.json:
        common.print_json({"store": args.store, "out": str(out), "rows": len(df)})
        return 0
    print(f"wrote {len(df)} rows to {out}")
    return 0
