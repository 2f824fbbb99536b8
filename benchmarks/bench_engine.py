"""Time a whole (sigma_w2, sigma_b2) tanh grid against a classic per-point baseline.

The baseline is how research code usually does it: scipy.integrate.quad for every Gaussian integral
(dblquad-free: the 2-D integral as nested quad), fixed-point iteration for q* and c*, one point at a
time. Both compute q*, c*, chi1, chi_c, xi_q, xi_c and xi_grad; the script also reports their largest
disagreement on the baseline points, so the speed-up compares equal work.

    python benchmarks/bench_engine.py                      # 1000 x 1000 grid (the issue's size)
    python benchmarks/bench_engine.py --n 300 --device cpu # reduced size
    python benchmarks/bench_engine.py --device cuda        # on a GPU
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time

import numpy as np
import torch
from scipy import integrate

from deepprop.theory.meanfield import mean_field

SQ2PI = math.sqrt(2 * math.pi)


def _e1(f, q: float) -> float:
    s = math.sqrt(q)
    return integrate.quad(lambda z: f(s * z) * math.exp(-z * z / 2), -np.inf, np.inf, epsabs=1e-12)[0] / SQ2PI


def _e2(f, g, q: float, c: float) -> float:
    s, r = math.sqrt(q), math.sqrt(max(1 - c * c, 0.0))

    def inner(z1: float) -> float:
        return integrate.quad(lambda z2: g(s * (c * z1 + r * z2)) * math.exp(-z2 * z2 / 2), -np.inf, np.inf,
                              epsabs=1e-11)[0] / SQ2PI

    return integrate.quad(lambda z1: f(s * z1) * inner(z1) * math.exp(-z1 * z1 / 2), -np.inf, np.inf,
                          epsabs=1e-11)[0] / SQ2PI


def baseline_point(sw2: float, sb2: float) -> dict:
    """Per-point computation with scipy quad and plain fixed-point iteration (classic research code)."""
    tanh = math.tanh

    def dtanh(x: float) -> float:
        return 1.0 - math.tanh(x) ** 2

    q = 1.0
    for _ in range(1000):
        q_new = sw2 * _e1(lambda x: tanh(x) ** 2, q) + sb2
        if abs(q_new - q) < 1e-12:
            q = q_new
            break
        q = q_new
    chi1 = sw2 * _e1(lambda x: dtanh(x) ** 2, q)
    h = 1e-6
    slope_q = sw2 * (_e1(lambda x: tanh(x) ** 2, q + h) - _e1(lambda x: tanh(x) ** 2, q - h)) / (2 * h)
    if chi1 <= 1:
        c, chi_c = 1.0, chi1
    else:
        c = 0.5
        for _ in range(2000):
            c_new = (sw2 * _e2(tanh, tanh, q, c) + sb2) / q
            if abs(c_new - c) < 1e-10:
                c = c_new
                break
            c = c_new
        chi_c = sw2 * _e2(dtanh, dtanh, q, c)
    return {"q_star": q, "c_star": c, "chi1": chi1, "chi_c": chi_c, "xi_q": -1 / math.log(abs(slope_q)),
            "xi_c": -1 / math.log(chi_c), "xi_grad": -1 / math.log(chi1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="grid is n x n (default 1000: 1e6 points)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--baseline-points", type=int, default=4, help="points timed with the scipy baseline")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args()

    sw2 = np.linspace(1.0, 4.0, args.n)
    sb2 = np.linspace(0.0, 0.3, args.n)
    if args.device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    mf = mean_field("tanh", sw2[:, None], sb2[None, :], device=args.device)
    if args.device == "cuda":
        torch.cuda.synchronize()
    grid_s = time.perf_counter() - t0
    n_points = args.n * args.n

    rng = np.random.default_rng(0)
    picks = [(int(i), int(j)) for i, j in zip(rng.integers(0, args.n, args.baseline_points),
                                              rng.integers(0, args.n, args.baseline_points), strict=True)]
    t0 = time.perf_counter()
    base = [baseline_point(float(sw2[i]), float(sb2[j])) for i, j in picks]
    base_s = time.perf_counter() - t0
    worst = 0.0
    for (i, j), b in zip(picks, base, strict=True):
        for key in ("q_star", "c_star", "chi1", "xi_c"):
            worst = max(worst, abs(getattr(mf, key)[i, j] - b[key]) / abs(b[key]))

    per_point_engine = grid_s / n_points
    per_point_base = base_s / len(picks)
    result = {
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "grid_points": n_points,
        "grid_seconds": round(grid_s, 3),
        "engine_us_per_point": round(1e6 * per_point_engine, 3),
        "baseline_points": len(picks),
        "baseline_seconds_per_point": round(per_point_base, 3),
        "speedup_per_point": round(per_point_base / per_point_engine, 1),
        "max_rel_diff_vs_baseline": float(f"{worst:.2e}"),
        "phases": {p: int((mf.phase == p).sum()) for p in ("ordered", "critical", "chaotic", "unbounded")},
    }
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)


if __name__ == "__main__":
    main()
