"""Shared vs independent backpropagation with dropout (follow-ups section 2), the variance-vs-mean law, and
the eq. 17 covariance scale beside its forward-transient theory.

Part 1 (``backprop_depth_scales``, tanh, sb2 = 0.05): per keep rate and sigma_w2 the single-input depth
scale (per-example ||grad E_a||^2, eq. 16 with the dropout chi1) and the pair depth scale (same-label
gradient covariance, eq. 17: xi_cov = -1/log chi_c), with the forward weights and masks (shared) and with
fresh ones (independent), beside the theory. Part 2 (``variance_mean_laws``): var = A mean^p of
||grad W^l||^2 across networks, all layers and sigma_w2 pooled, 95 % bootstrap interval on p, per
activation and keep rate. Part 3 (``covariance_transient``): the measured xi_cov_fit beside the same fit
of the mean-field covariance profile through the forward transient from the batch's own inputs. Run:

    .venv/bin/python benchmarks/fidelity_backprop.py [--parts 1 2 3] [--transient-widths 300 1000]
"""

from __future__ import annotations

import argparse
import time

import torch

from deepprop.simulate.backprop_modes import backprop_depth_scales, covariance_transient, variance_mean_laws


def _f(v: float | None) -> str:
    return "nan" if v is None else f"{v:.2f}"


def _pct(v: float | None) -> str:
    return "nan" if v is None else f"{100 * v:+.1f}%"


def _pm(d: dict, k: str) -> str:
    return f"{_f(d[k])}+-{_f(d[k + '_err'])}"


def part1(a: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    rows = backprop_depth_scales("tanh", a.sigma_w2, 0.05, keep_rates=a.keep_rates, width=a.width, depth=a.depth,
                                 networks=a.networks)
    print(f"# part 1: tanh sb2=0.05 width={a.width} depth={a.depth} networks={a.networks} batch 32 (digits); "
          f"{time.perf_counter() - t0:.1f} s")
    print(f"{'rho':>5} {'sw2':>5} {'xi_grad':>8} {'single shared':>14} {'single indep':>14} {'xi_cov':>7} "
          f"{'pair shared':>14} {'pair indep':>14} {'pair/single':>11}")
    for r in rows:
        d = r.to_dict()
        ratio = d["pair_shared"] / d["single_shared"] if d["pair_shared"] and d["single_shared"] else None
        print(f"{d['keep_rate']:>5} {d['sigma_w2']:>5} {_f(d['xi_grad']):>8} {_pm(d, 'single_shared'):>14} "
              f"{_pm(d, 'single_independent'):>14} {_f(d['xi_cov']):>7} {_pm(d, 'pair_shared'):>14} "
              f"{_pm(d, 'pair_independent'):>14} {_f(ratio):>11}")


def part2(a: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    rows = variance_mean_laws(keep_rates=a.keep_rates_law, width=a.width, depth=a.depth,
                              networks=max(a.networks, 12))
    print(f"# part 2: var = A mean^p across networks (width {a.width}, depth {a.depth}, "
          f"{max(a.networks, 12)} networks, 95% bootstrap CI); {time.perf_counter() - t0:.1f} s")
    for r in rows:
        inside = "yes" if r.ci_low <= 2.0 <= r.ci_high else "no"
        print(f"{r.activation:>5} rho={r.keep_rate:<4} {r.statistic:>20}: p = {r.exponent:.3f} "
              f"(95% CI {r.ci_low:.3f}..{r.ci_high:.3f}), A = {r.prefactor:.3g}, {r.n_points} points; "
              f"2 in CI: {inside}")


def part3(a: argparse.Namespace) -> None:
    for n in a.transient_widths:
        sw = [1.0, 1.25, 1.5, 2.5, 3.5] if n <= 300 else [1.25, 1.5]
        nets = 8 if n <= 300 else 6
        t0 = time.perf_counter()
        rows = covariance_transient("tanh", sw, 0.05, width=n, depth=100, networks=nets, batch_size=32,
                                    chunk=2 if n >= 1000 else None)
        print(f"# part 3: eq. 17 same-label covariance, tanh sb2=0.05 width={n} depth=100 networks={nets} "
              f"(digits, batch 32); {time.perf_counter() - t0:.1f} s")
        print(f"{'sw2':>5} {'xi_cov':>7} {'fit':>13} {'transient th':>12} {'fit/trans':>9} {'trans/xi':>8} "
              f"{'fit/xi':>7} {'window':>9} {'c(first)':>8}")
        for r in rows:
            d = r.to_dict()
            print(f"{d['sigma_w2']:>5} {_f(d['xi_cov']):>7} {_pm(d, 'xi_cov_fit'):>13} "
                  f"{_f(d['xi_cov_transient']):>12} {_pct(d['rel_err_transient']):>9} "
                  f"{_pct(d['transient_effect']):>8} {_pct(d['rel_err_asymptotic']):>7} {str(d['window']):>9} "
                  f"{_f(d['c_first']):>8}  {d['xi_cov_fit_reason'] or ''}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--width", type=int, default=300)
    ap.add_argument("--depth", type=int, default=60)
    ap.add_argument("--networks", type=int, default=8)
    ap.add_argument("--keep-rates", type=float, nargs="+", default=[1.0, 0.95, 0.9])
    ap.add_argument("--keep-rates-law", type=float, nargs="+", default=[1.0, 0.9])
    ap.add_argument("--sigma-w2", type=float, nargs="+", default=[1.0, 1.25, 1.5, 2.5, 3.5])
    ap.add_argument("--transient-widths", type=int, nargs="+", default=[300, 1000])
    a = ap.parse_args()
    torch.set_num_threads(1)
    for p in a.parts:
        {1: part1, 2: part2, 3: part3}[p](a)


if __name__ == "__main__":
    main()
