"""Trainability of dropout ReLU networks: noise-aware critical init (sw2 = 2 rho) vs He init (sw2 = 2).

Trains, with the sweep engine's batched ensembles, ReLU networks without bias with inverted dropout of keep
rate rho at both initialisations over a range of depths and seeds (SGD, fixed learning rate), writes
``init_vs_he.png`` and a resumable store ``init_vs_he.sqlite`` to ``--out``, and prints a table: depth,
mean +- std training accuracy of each init (diverged networks at chance), diverged counts, and the
mean-field prediction 6 xi_c of each setting. Runs unchanged on a GPU with ``--device cuda``.

    python benchmarks/init_vs_he.py --out results/init_vs_he
    python benchmarks/init_vs_he.py --device cuda --width 512 --steps 2000 --depths 2:40:20 --seeds 0:9:10
"""

from __future__ import annotations

import argparse
import sys
import time

from deepprop.errors import ParameterError
from deepprop.plots.critical_init import draw_init_vs_he
from deepprop.sweep.compare import compare_inits, q_curves
from deepprop.sweep.config import parse_grid


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/init_vs_he", help="output folder (PNG and resumable store)")
    ap.add_argument("--keep-rate", type=float, default=0.8, help="dropout keep probability rho (default 0.8)")
    ap.add_argument("--depths", default="2,4,6,8,10,12,16", help="list 'a,b,c' or start:stop:count")
    ap.add_argument("--seeds", default="0,1,2", help="list 'a,b,c' or start:stop:count")
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--lr", type=float, default=0.05, help="SGD learning rate (default 0.05)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    try:
        t0 = time.perf_counter()
        table, cfg = compare_inits(
            args.out,
            keep_rate=args.keep_rate,
            depths=parse_grid("depths", args.depths, integer=True),
            seeds=parse_grid("seeds", args.seeds, integer=True),
            width=args.width,
            steps=args.steps,
            lr=args.lr,
            batch_size=args.batch_size,
            dataset=args.dataset,
            device=args.device,
        )
        path = draw_init_vs_he(table, cfg, q_curves(table, cfg), args.out)
        wall = time.perf_counter() - t0
    except ParameterError as exc:
        print(f"init_vs_he: error: --{exc.param.replace('_', '-')}: {exc.detail}", file=sys.stderr)
        return 2
    crit = table[table["init"] == "critical"].set_index("depth")
    he = table[table["init"] == "He"].set_index("depth")
    print(
        f"ReLU, no bias, dropout keep {args.keep_rate:g}, {args.dataset}, width {args.width}, "
        f"{args.steps} SGD steps at lr {args.lr:g}, batch {args.batch_size}, {len(crit['n_seeds'])} depths x "
        f"{int(crit['n_seeds'].iloc[0])} seeds, device {args.device}; {wall:.1f} s"
    )
    print(
        f"critical sw2 = {crit['sigma_w2'].iloc[0]:.3g} (q^l x {crit['q_growth'].iloc[0]:.3g}/layer, "
        f"6 xi_c = {crit['max_depth'].iloc[0]:.2f});  He sw2 = {he['sigma_w2'].iloc[0]:.3g} "
        f"(q^l x {he['q_growth'].iloc[0]:.3g}/layer, 6 xi_c = {he['max_depth'].iloc[0]:.2f})"
    )
    print("| depth | train acc, critical | train acc, He | diverged critical | diverged He |")
    print("|---:|---:|---:|---:|---:|")
    for depth in crit.index:
        c, h = crit.loc[depth], he.loc[depth]
        print(
            f"| {depth} | {c['train_acc']:.3f} +- {c['train_acc_std']:.3f} | "
            f"{h['train_acc']:.3f} +- {h['train_acc_std']:.3f} | "
            f"{c['n_diverged']}/{c['n_seeds']} | {h['n_diverged']}/{h['n_seeds']} |"
        )
    print(f"figure: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
