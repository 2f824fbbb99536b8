"""Jacobian spectrum theory (free probability) against simulated spectra, and the equal-gain channel map.

Part 1: spread = var/mean^2 of the squared singular values and the equal-gain information I/N, theory
vs simulation, at width N for depths 16..128, tanh (critical, sb2 = 0.05) and relu (sw2 = 2, sb2 = 0,
q = 1), Gaussian and orthogonal weights. Part 2: the equal-gain information (theory) over sw2 at
several sb2 and both weight types (``information_map``), where it peaks, where chi1 = 1, and a simulated
check. Part 3: the Gaussian spread at L = 64, 128 (width 500 with 16 networks, width 1000 with 6). Run:

    .venv/bin/python benchmarks/fidelity_spectrum.py [--parts 1 2 3] [--width 500] [--depths 16 32 64 128]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from deepprop.simulate.jacobian import jacobian_spectrum
from deepprop.theory.meanfield import critical_sigma_w2
from deepprop.theory.spectrum import equal_gain_information, information_map, jacobian_moments


def part1(width: int, depths: list[int], networks: int) -> None:
    sw_c = float(np.ravel(critical_sigma_w2("tanh", 0.05))[0])
    cases = [("tanh", sw_c, 0.05, None), ("relu", 2.0, 0.0, 1.0)]
    print(f"# part 1: width {width}, {networks} networks; spread = mean over networks of var/mean^2")
    print(f"{'act':>5} {'weights':>10} {'L':>4} {'spread th':>10} {'spread sim':>16} {'dev':>5} "
          f"{'I_eq th':>8} {'I_eq sim':>8} {'dev':>5} {'<s2>/chi1^L':>11} {'s':>5}")
    for act, sw2, sb2, q in cases:
        for w in ("gaussian", "orthogonal"):
            for L in depths:
                t0 = time.perf_counter()
                th = jacobian_moments(act, sw2, sb2, L, weights=w, q=q)
                ith = equal_gain_information(act, sw2, sb2, L, weights=w, q=q)
                r = jacobian_spectrum(act, sw2, sb2, width=width, depth=L, weights=w, networks=networks,
                                      input_q=q, seed=L)
                p = r.points[0]
                sv2 = p.singular_values ** 2
                per = sv2.var(axis=1) / sv2.mean(axis=1) ** 2
                err = per.std(ddof=1) / np.sqrt(len(per))
                print(f"{act:>5} {w:>10} {L:>4} {th.spread:>10.3f} {f'{p.spread:.3f}+-{err:.3f}':>16} "
                      f"{(p.spread / th.spread - 1) * 100 if th.spread > 0 else 0:>4.0f}% {ith:>8.4f} "
                      f"{p.mi_equal_gain:>8.4f} {(p.mi_equal_gain / ith - 1) * 100:>4.1f}% "
                      f"{p.mean_sq_singular / th.mean:>11.3f} {time.perf_counter() - t0:>5.1f}")


def part2(depth: int, sim_width: int, sim_networks: int) -> None:
    sws = [0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0]
    t0 = time.perf_counter()
    imap = information_map("tanh", sws, [0.001, 0.05, 0.2], depth, grid=400)
    print(f"# part 2: equal-gain I/N (snr 1, isometry bound {imap.mi_isometry:.4f}) over sw2 x sb2 x weights, "
          f"tanh, depth {depth}, sw2 grid {sws} + the critical sw2; {time.perf_counter() - t0:.1f} s")
    print(f"{'sb2':>6} {'weights':>10} {'sw2':>6} {'q*':>7} {'chi1':>6} {'spread':>8} {'I/N':>7}  peak/critical")
    for p in imap.points:
        mark = ("critical " if p.critical else "") + ("PEAK" if imap.peak(p.sigma_b2, p.weights) == p else "")
        print(f"{p.sigma_b2:>6} {p.weights:>10} {p.sigma_w2:>6.3f} {p.q_star:>7.4f} {p.chi1:>6.3f} "
              f"{p.spread:>8.3f} {p.mi_equal_gain:>7.4f}  {mark}{p.reason or ''}")
    iso = imap.isometry()
    print(f"# dynamical isometry on this map (chi1 = 1, smallest spread): sb2={iso.sigma_b2} {iso.weights} "
          f"sw2={iso.sigma_w2:.3f} spread {iso.spread:.3f} I/N {iso.mi_equal_gain:.4f}")
    print(f"# simulated check at width {sim_width}, {sim_networks} networks, depth {depth}")
    for sb2 in (0.001, 0.05):
        for w in ("gaussian", "orthogonal"):
            crit = imap.critical(sb2, w).sigma_w2
            sim_sw = sorted({0.75, round(crit, 4), 3.0})
            r = jacobian_spectrum("tanh", sim_sw, sb2, width=sim_width, depth=depth, weights=w,
                                  networks=sim_networks, seed=0)
            for p in r.points:
                d = p.to_dict()
                print(f"sb2={sb2:<6} {w:>10} sw2={d['sigma_w2']:<6} chi1={d['chi1']:.3f} spread sim "
                      f"{d['spread']:.3f} th {d['theory_spread']:.3f}  I/N sim {d['mi_equal_gain']:.4f}"
                      f"+-{d['mi_equal_gain_err'] or 0:.4f} th {d['mi_equal_gain_theory']:.4f}")


def part3(widths: list[int], networks: list[int], depths: list[int]) -> None:
    """Gaussian tanh at criticality: the spread's estimators at large L/N (heavy upper tail)."""
    sw_c = float(np.ravel(critical_sigma_w2("tanh", 0.05))[0])
    print("# part 3: tanh gaussian sb2=0.05 at sw2_c; per-network var/mean^2 (mean +- stderr, median) and the "
          "pooled E[m2]/E[m1]^2 - 1 (the free-probability quantity)")
    print(f"{'N':>5} {'nets':>4} {'L':>4} {'theory':>8} {'per-net mean':>16} {'dev':>5} {'median':>8} "
          f"{'pooled':>8} {'dev':>5} {'s':>6}")
    for n, k in zip(widths, networks, strict=True):
        for L in depths:
            t0 = time.perf_counter()
            th = jacobian_moments("tanh", sw_c, 0.05, L).spread
            p = jacobian_spectrum("tanh", sw_c, 0.05, width=n, depth=L, networks=k, seed=100 + L).points[0]
            sv2 = p.singular_values ** 2
            per = sv2.var(axis=1) / sv2.mean(axis=1) ** 2
            pooled = (sv2 ** 2).mean() / sv2.mean() ** 2 - 1.0
            print(f"{n:>5} {k:>4} {L:>4} {th:>8.2f} {f'{per.mean():.2f}+-{per.std(ddof=1) / np.sqrt(k):.2f}':>16} "
                  f"{(per.mean() / th - 1) * 100:>4.0f}% {np.median(per):>8.2f} {pooled:>8.2f} "
                  f"{(pooled / th - 1) * 100:>4.0f}% {time.perf_counter() - t0:>6.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=500)
    ap.add_argument("--depths", type=int, nargs="+", default=[16, 32, 64, 128])
    ap.add_argument("--networks", type=int, default=4)
    ap.add_argument("--map-depth", type=int, default=32)
    ap.add_argument("--sim-width", type=int, default=300)
    ap.add_argument("--sim-networks", type=int, default=3)
    ap.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--spread-widths", type=int, nargs="+", default=[500, 1000])
    ap.add_argument("--spread-networks", type=int, nargs="+", default=[16, 6])
    a = ap.parse_args()
    torch.set_num_threads(1)
    if 1 in a.parts:
        part1(a.width, a.depths, a.networks)
    if 2 in a.parts:
        part2(a.map_depth, a.sim_width, a.sim_networks)
    if 3 in a.parts:
        part3(a.spread_widths, a.spread_networks, [64, 128])


if __name__ == "__main__":
    main()
