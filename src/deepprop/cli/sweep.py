"""``deepprop sweep run|status|plot|fit|export``: trainability sweeps over (depth, sigma_w2).

deepprop sweep run [CONFIG.toml] [--preset NAME [--full]] --store FILE [--executor local|ray]
    [--device cpu|cuda] [--dataset digits] [--activation tanh] [--sigma-b2 0.05] [--keep-rate R]
    [--width N] [--depths GRID] [--sigma-w2 GRID] [--optimizer sgd|rmsprop] [--lr RATE|paper]
    [--steps N] [--batch-size N] [--seed S]
    (defaults: width 300, depths 10,20,30, sigma_w2 1,2,3, lr paper, steps 200, batch size 128; a GRID is
    start:stop:count, inclusive, or a,b,c)
deepprop sweep status STORE [--json]
deepprop sweep plot STORE --out heatmap.png [--json]
deepprop sweep fit STORE [--threshold T] [--json]
deepprop sweep export STORE --out FILE.csv|.parquet [--json]

--executor ray --ray-address HOST:PORT runs each chunk as a task on an existing Ray cluster (see README).
Several `sweep run` commands on one store share the work: each leases the chunks it trains (--lease-seconds),
waits for those another runner holds, and takes over the chunks of a runner that was killed.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deepprop.cli import common
from deepprop.errors import ParameterError

# flag -> config key; flags left unset do not override the config file or preset (the prior's flags:
# common.grid_flags(), added by common.add_prior_options)
RUN_FLAGS: dict[str, tuple[str, type, str]] = {
    "--dataset": ("dataset", str, "digits | fashion-mnist | mnist | cifar10 | synthetic (default digits)"),
    "--data-dir": ("data_dir", common.path_text, "directory with the dataset files"),
    "--n-train": ("n_train", common.positive_int, "use a random subset of this many training examples (default: all)"),
    "--n-test": ("n_test", common.positive_int, "use a random subset of this many test examples (default: all)"),
    "--weights": ("weights", str, "gaussian | orthogonal (default gaussian)"),
    "--width": ("width", common.positive_int, "hidden width N (default 300)"),
    "--depths": ("depths", str, "depth grid: start:stop:count (inclusive) or a,b,c (default 10,20,30)"),
    "--optimizer": ("optimizer", str, "sgd | rmsprop (default sgd)"),
    "--lr": ("lr", str, "learning rate, or 'paper' (1e-3 below depth 200, 1e-4 above; RMSProp 1e-5; the default)"),
    "--steps": ("steps", common.positive_int, "training steps (default 200)"),
    "--batch-size": ("batch_size", common.positive_int, "mini-batch size (default 128)"),
    "--seed": ("seeds", str, "seed(s): S, a,b,c or start:stop:count (default 0)"),
    "--device": ("device", str, "cpu | cuda (default cpu)"),
    "--dtype": ("dtype", str, "float32 | float64 (default float32)"),
    "--precision": ("precision", str, "fp32 | tf32 | bf16 (faster modes are opt-in; default fp32)"),
    "--chunk-size": ("chunk_size", common.positive_int, "networks per batched chunk (default: what fits in memory)"),
    "--eval-train": (
        "eval_train",
        common.positive_int,
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
    run.add_argument("config", nargs="?", type=common.path_text,
                     help="TOML file describing the sweep (may name its own preset = \"fig5a\")")
    run.add_argument("--preset", help="paper setting: fig5a | fig6 (reduced size unless --full); not with CONFIG")
    run.add_argument("--full", action="store_true", help="with --preset: the paper's size (for a GPU)")
    run.add_argument("--store", type=common.path_text, required=True,
                     help="SQLite file for the results (resumed if it exists; its folder must exist)")
    run.add_argument("--lease-seconds", type=common.positive_float, default=None, metavar="S",
                     help="how long a claim on a chunk lasts without renewal (default 60): another runner on the "
                     "same store takes over the chunks of a runner that stopped (at once on this host)")
    common.add_json(run, "print the run's summary as one JSON object")
    common.add_quiet(run)
    common.add_prior_options(run, grid=True)
    for flag, (key, typ, help_) in RUN_FLAGS.items():
        run.add_argument(flag, dest=f"cfg_{key}", type=typ, default=None, help=help_,
                         metavar=flag[2:].upper().replace("-", "_"))
    run.set_defaults(func=_run)

    st = ssub.add_parser("status", help="done/total of a store's sweep")
    st.add_argument("store", type=common.path_text)
    common.add_json(st)
    st.set_defaults(func=_status)

    pl = ssub.add_parser("plot", help="heatmap of accuracy over (sigma_w2, depth) with xi_c overlays")
    pl.add_argument("store", type=common.path_text)
    pl.add_argument("--out", type=common.path_text, required=True, help="image file: .png, .pdf or .svg")
    pl.add_argument("--metric", default="train_accuracy", choices=["train_accuracy", "test_accuracy"],
                    help="the accuracy each cell shows (default train_accuracy)")
    common.add_json(pl, "print a JSON summary (store, out, metric, rows) instead of text")
    pl.set_defaults(func=_plot)

    ft = ssub.add_parser("fit", help="fit trainable-depth laws L_max = a xi_c, min(a xi_c, b xi_1)")
    ft.add_argument("store", type=common.path_text)
    ft.add_argument(
        "--threshold",
        type=common.fraction,
        default=None,
        help="accuracy counted as trainable (default: halfway between chance and the best cell)",
    )
    ft.add_argument("--metric", default="train_accuracy", choices=["train_accuracy", "test_accuracy"],
                    help="the accuracy that decides a trainable cell (default train_accuracy)")
    common.add_json(ft)
    ft.set_defaults(func=_fit)

    ex = ssub.add_parser("export", help="one row per trained network to CSV or parquet")
    ex.add_argument("store", type=common.path_text)
    ex.add_argument("--out", type=common.path_text, required=True, help="FILE.csv or FILE.parquet")
    common.add_json(ex, "print a JSON summary (store, out, rows) instead of text")
    ex.set_defaults(func=_export)


def build_config(args: argparse.Namespace) -> Any:
    """Preset or TOML file (not both: a file names its own preset), then flags, each overriding the one
    before; validated.

    An error inside the TOML file names the file and the key (``config: sweep.toml: key 'widht': ...``)."""
    from deepprop.sweep.config import from_mapping, load_toml, preset_config
    from deepprop.validation import check_input_file

    if args.full and not args.preset:
        raise ParameterError("full", "needs --preset")
    if args.preset and args.config:
        raise ParameterError("preset", f"conflicts with the config file {args.config} (give one of them; a file "
                                       "may name its own preset = \"...\")")
    base = preset_config(args.preset, full=args.full) if args.preset else None
    if args.config:
        path = check_input_file(args.config, param="config", what="config file")
        try:
            base = load_toml(path, base)
        except ParameterError as exc:
            if exc.param == "config":
                raise
            raise ParameterError("config", f"{args.config}: key {exc.param!r}: {exc.detail}") from exc
    overrides = {key: getattr(args, f"cfg_{key}") for key, _, _ in (*common.grid_flags().values(), *RUN_FLAGS.values())}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    return from_mapping(overrides, base)


def _run(args: argparse.Namespace) -> int:
    from deepprop.sweep.runner import LEASE_SECONDS, run_sweep

    cfg = build_config(args)
    lease = LEASE_SECONDS if args.lease_seconds is None else args.lease_seconds
    summary = run_sweep(cfg, args.store, progress=args.progress, lease_seconds=lease,
                        same_sweep=True)  # connects to Ray (if asked) and disconnects
    if args.json:
        common.print_json({"store": args.store, "networks": summary.total,
                           "done": summary.already_done + summary.trained + summary.by_others,
                           "trained": summary.trained, "diverged": summary.diverged,
                           "already_done": summary.already_done, "by_other_runners": summary.by_others,
                           "seconds": round(summary.wall_s, 3)})
        return 0
    print(summary.text())
    return 0


def _status(args: argparse.Namespace) -> int:
    from deepprop.sweep.runner import status

    s = status(args.store)
    if args.json:
        common.print_json({"store": args.store, **s})
        return 0
    running = f", {s['in_progress']} being trained by {s['runners']} runner(s)" if s["in_progress"] else ""
    print(f"{s['done']}/{s['total']} done ({s['diverged']} diverged, {s['rows']} rows in store{running})")
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


def _complete_rows(path: str, df):
    """(rows of complete cells only, completeness summary): cells of the store's last planned sweep that
    still miss networks (being trained, or never trained) are left out of fits, and said so."""
    from deepprop.sweep.runner import incomplete_cells, status

    st = status(path)
    missing = incomplete_cells(st["config"], set(df["run_key"]))
    cell = list(zip(df["depth"].astype(int), df["sigma_w2"].astype(float), df["keep_rate"].astype(float),
                    strict=True))
    keep = [c not in (missing or set()) for c in cell]
    cells_all = len(set(cell) | (missing or set()))
    info = {"networks_planned": st["total"], "networks_done": st["done"], "networks_in_progress": st["in_progress"],
            "cells_planned": cells_all, "cells_complete": cells_all - len(missing or set()),
            "complete": missing is not None and not missing}
    return df[keep], info


def _plot(args: argparse.Namespace) -> int:
    from deepprop.validation import check_output_path

    out = check_output_path(args.out, suffixes=(".png", ".pdf", ".svg"))
    df = _frame(args.store)
    common.headless_plots()
    from deepprop.plots.sweep import plot_heatmap

    out = plot_heatmap(df, out, metric=args.metric, n_classes=_n_classes(args.store))
    if args.json:
        common.print_json({"store": args.store, "out": str(out), "metric": args.metric, "rows": len(df)})
        return 0
    print(f"wrote {out}")
    return 0


def _fit(args: argparse.Namespace) -> int:
    from deepprop.sweep.analysis import fit_laws

    df = _frame(args.store)
    rows, info = _complete_rows(args.store, df)
    warning = None
    if not info["complete"]:
        warning = (f"partial store: {info['networks_done']}/{info['networks_planned']} planned networks done"
                   + (f" ({info['networks_in_progress']} being trained)" if info["networks_in_progress"] else "")
                   + f"; fitting the {info['cells_complete']} complete cells of {info['cells_planned']}")
    if rows.empty:
        raise ParameterError("store", f"{args.store}: no complete cell yet ({warning}); wait for the sweep or "
                                      "run it again to finish it")
    fits, cells, thr = fit_laws(rows, threshold=args.threshold, n_classes=_n_classes(args.store),
                                metric=args.metric)
    n_trainable = int(cells["trainable"].sum())
    if warning is not None:
        print(f"deepprop sweep fit: warning: {warning}", file=sys.stderr)
    if args.json:
        common.print_json({"store": args.store, "metric": args.metric, "threshold": thr,
                           "trainable_cells": n_trainable, "cells": len(cells), **info, "warning": warning,
                           "fits": fits})
        return 0
    print(f"trainable: mean {args.metric} >= {thr:.3f}; {n_trainable}/{len(cells)} cells trainable "
          f"({info['cells_complete']} of {info['cells_planned']} planned cells complete)")
    for f in fits:
        print(f.line())
    return 0


def _export(args: argparse.Namespace) -> int:
    from deepprop.sweep.analysis import export
    from deepprop.validation import check_output_path

    check_output_path(args.out, suffixes=(".csv", ".parquet", ".pq"))
    df = _frame(args.store)
    out = export(df, args.out)
    if args.json:
        common.print_json({"store": args.store, "out": str(out), "rows": len(df)})
        return 0
    print(f"wrote {len(df)} rows to {out}")
    return 0
