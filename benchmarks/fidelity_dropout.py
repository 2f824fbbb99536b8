"""Forward correlation depth scale with dropout at finite width (tanh, sw2 = 2, sb2 = 0.05).

Per (keep rate, width, start) the measured xi_c (free-asymptote fit, mean and standard error over
independent replicate ensembles) beside the SAME fit of the infinite-width trajectory (same layers, same
weights) and eq. 9's asymptotic xi_c; starts c0 = 0.99 ("far") and c0 = c* - 0.15 ("near"), q0 = q*.
See deepprop.simulate.correlation_scale. Run:

    .venv/bin/python benchmarks/fidelity_dropout.py [--widths 300 1000] [--networks 8] [--replicates 3]
"""

from __future__ import annotations

import argparse
import time

import torch

from deepprop.simulate.correlation_scale import correlation_scale_fidelity


def _f(v: float | None, nd: int = 2) -> str:
    return "nan" if v is None else f"{v:.{nd}f}"


def _pct(v: float | None) -> str:
    return "nan" if v is None else f"{100 * v:+.0f}%"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--widths", type=int, nargs="+", default=[300, 1000])
    ap.add_argument("--keep-rates", type=float, nargs="+", default=[1.0, 0.99, 0.95, 0.9, 0.8])
    ap.add_argument("--sigma-w2", type=float, default=2.0)
    ap.add_argument("--networks", type=int, default=8)
    ap.add_argument("--replicates", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--c0-far", type=float, default=0.99)
    ap.add_argument("--near-offset", type=float, default=-0.15)
    a = ap.parse_args()
    torch.set_num_threads(1)
    print(f"# tanh sw2={a.sigma_w2} sb2=0.05 {a.replicates} replicate ensembles x {a.networks} networks, "
          f"{a.pairs} pairs per start (error: replicate scatter); "
          f"depth = clip(6 xi_c, 30, 160); free fit c = c_inf + A exp(-l/xi) on layers 0..depth")
    print(f"{'rho':>5} {'N':>5} {'start':>5} {'c0':>6} {'L':>4} {'xi_c':>6} {'fit':>14} {'theory(win)':>11} "
          f"{'fit/win':>7} {'z':>5} {'win/xi_c':>8} {'fit/xi_c':>8} {'anch fit':>13} {'anch th':>7} {'verdict':>8}"
          f" {'s':>5}  reason")
    for rho in a.keep_rates:
        for n in a.widths:
            t0 = time.perf_counter()
            rows = correlation_scale_fidelity("tanh", a.sigma_w2, 0.05, keep_rates=[rho], widths=[n],
                                              c0_far=a.c0_far, near_offset=a.near_offset, networks=a.networks,
                                              pairs=a.pairs, replicates=a.replicates, seed=0)
            dt = time.perf_counter() - t0
            for r in rows:
                d = r.to_dict()
                an = d["anchored"]
                reason = d["xi_c_fit_reason"] or d["xi_c_fit_theory_reason"] or d["note"] or an["reason"] or ""
                print(f"{rho:>5} {n:>5} {d['start']:>5} {d['c0']:>6.3f} {d['depth']:>4} {d['xi_c']:>6.2f} "
                      f"{_f(d['xi_c_fit']) + '+-' + _f(d['xi_c_fit_err']):>14} {_f(d['xi_c_fit_theory']):>11} "
                      f"{_pct(d['rel_err_window']):>7} {_f(d['z_window'], 1):>5} {_pct(d['window_effect']):>8} "
                      f"{_pct(d['rel_err_asymptotic']):>8} "
                      f"{_f(an['xi_c_fit']) + '+-' + _f(an['xi_c_fit_err']):>13} {_f(an['xi_c_fit_theory']):>7} "
                      f"{d['verdict']:>8} {dt:>5.1f}  {reason}")


if __name__ == "__main__":
    main()
