"""Gradient depth scales (eq. 16, 17) on real data against theory, at widths 100 / 300 / 1000.

Prints one row per (width, sigma_w2): the per-example fit (eq. 16's quantity) with its jackknife error,
the batch-summed fit (fig. 4's quantity), the geometric-mean fit against the finite-width Lyapunov
prediction, and the same-label gradient covariance fit against eq. 17. Run:

    .venv/bin/python benchmarks/fidelity_gradients.py [--widths 100 300 1000] [--depth 100]
"""

from __future__ import annotations

import argparse
import time

import torch

from deepprop.simulate.gradients import simulate_gradients


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--sigma-w2", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])
    ap.add_argument("--depth", type=int, default=100)
    ap.add_argument("--networks", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--backprop", default="shared")
    ap.add_argument("--keep-rate", type=float, default=1.0)
    ap.add_argument("--activation", default="tanh")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    print(f"# {a.activation} sb2=0.05 depth={a.depth} networks={a.networks} batch={a.batch_size} "
          f"dataset={a.dataset} backprop={a.backprop} keep_rate={a.keep_rate}")
    print(f"{'N':>5} {'sw2':>5} {'xi_grad':>8} {'per-ex fit':>15} {'dev':>6} {'batch fit':>9} {'typ fit':>8} "
          f"{'typ th':>8} {'xi_cov':>7} {'cov fit':>15} {'dev':>6} {'L>=5xi':>6}")
    for n in a.widths:
        t0 = time.perf_counter()
        res = simulate_gradients(a.activation, a.sigma_w2, 0.05, width=n, depth=a.depth, networks=a.networks,
                                 batch_size=a.batch_size, dataset=a.dataset, backprop=a.backprop,
                                 keep_rate=a.keep_rate, chunk=4 if n >= 1000 else None, seed=0)
        dt = time.perf_counter() - t0
        for p in res.points:
            d = p.to_dict()

            def f(k: str, d: dict = d) -> str:
                v = d.get(k)
                return "nan" if v is None else f"{v:.2f}"

            dev = (d["xi_grad_fit"] / d["xi_grad"] - 1) * 100 if d["xi_grad_fit"] and d["xi_grad"] else float("nan")
            cdev = (d["xi_cov_fit"] / d["xi_cov"] - 1) * 100 if d["xi_cov_fit"] and d["xi_cov"] else float("nan")
            ok = "yes" if a.depth >= 5 * abs(d["xi_grad"]) else "no"
            print(f"{n:>5} {d['sigma_w2']:>5} {f('xi_grad'):>8} {f('xi_grad_fit') + '+-' + f('xi_grad_fit_err'):>15} "
                  f"{dev:>5.0f}% {f('xi_grad_fit_batch'):>9} {f('xi_grad_fit_typical'):>8} {f('xi_grad_typical'):>8} "
                  f"{f('xi_cov'):>7} {f('xi_cov_fit') + '+-' + f('xi_cov_fit_err'):>15} {cdev:>5.0f}% {ok:>6}"
                  + ("" if d["xi_cov_fit_reason"] is None else f"  [{d['xi_cov_fit_reason']}]"))
        law = res.var_mean.get("per_example_sq_norm")
        if law is not None:
            print(f"# N={n}: var ~ mean^{law.exponent:.3f} (95% CI {law.ci_low:.3f}..{law.ci_high:.3f}); "
                  f"{len(a.sigma_w2)} sw2 x {a.networks} networks in {dt:.1f} s")


if __name__ == "__main__":
    main()
