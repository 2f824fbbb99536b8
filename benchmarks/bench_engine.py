"""Time the mean-field engine against peers on the same machine, in the same run.

Workload A (mean_field): tanh, sigma_w2 in [1, 4] x sigma_b2 in [0, 0.3] on an n x n grid, every
quantity (q*, c*, chi1, chi_c, xi_q, xi_c, xi_grad, phase), float64. Peers, timed in this run:

* simple peer  : benchmarks/peer_meanfield.py ``peer_point`` on random grid points (61-node
                 Gauss-Hermite, 2-D by outer product, brentq for q* and c*);
* numpy peer   : the same numbers vectorised over points (``peer_vectorised``);
* scipy quad   : nested scipy.integrate.quad with plain fixed-point iteration (footnote only; ~10 s a
                 point).

Workload B (trajectory): q^l, c^l for l = 0 .. depth of tanh over a grid of distinct (sigma_w2,
sigma_b2), and of one prior over many c0. Peer: neural-tangents' NNGP kernel of the depth-L network
(relu, erf closed form; tanh by ElementwiseNumerical at deg 25 and 200), run by benchmarks/nt_peer.py in
its own environment (``--nt-python``) when that exists; skipped otherwise.

Each figure prints with its device; ratios compare figures of this run only. deepprop's figures are the
median of ``--repeat`` runs (the peers average over their many points in one run).

    python benchmarks/bench_engine.py                      # full size (1000 x 1000 grid, 1e5 trajectories)
    python benchmarks/bench_engine.py --n 300 --traj-points 10000
    python benchmarks/bench_engine.py --device cuda        # on a GPU
    python benchmarks/bench_engine.py --only grid          # just the grid (for /usr/bin/time -v)
    python benchmarks/bench_engine.py --only meanfield     # the grid and its peers
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from scipy import integrate

from deepprop.theory.meanfield import mean_field, trajectory

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_meanfield import QUANTITIES, peer_point, peer_vectorised  # noqa: E402

SQ2PI = math.sqrt(2 * math.pi)
DEFAULT_NT_PYTHON = "/tmp/ntvenv/bin/python"


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


def quad_point(sw2: float, sb2: float) -> dict:
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
    if chi1 <= 1:
        c = 1.0
    else:
        c = 0.5
        for _ in range(2000):
            c_new = (sw2 * _e2(tanh, tanh, q, c) + sb2) / q
            if abs(c_new - c) < 1e-10:
                c = c_new
                break
            c = c_new
    return {"q_star": q, "c_star": c, "chi1": chi1}


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a - b| / |b| over points where both are finite (|a - b| where b = 0)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan")
    diff = np.abs(a - b)[ok]
    scale = np.where(b[ok] == 0, 1.0, np.abs(b[ok]))
    return float(np.max(diff / scale))


def _timed(fn, args) -> tuple[float, float, object]:
    """(median, min) wall seconds of ``args.repeat`` calls of fn, and its last result. The 2-core VM this
    was written on varies by up to 40 % from run to run; the median of a few runs is the figure quoted."""
    times, out = [], None
    for _ in range(args.repeat):
        out = None  # the previous result is freed first: peak memory is that of one call
        _sync(args.device)
        t0 = time.perf_counter()
        out = fn()
        _sync(args.device)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), min(times), out


def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.linspace(1.0, 4.0, n), np.linspace(0.0, 0.3, n)


def bench_grid(args, rows: list, result: dict) -> None:
    sw2, sb2 = _grid(args.n)
    grid_s, grid_min_s, mf = _timed(
        lambda: mean_field("tanh", sw2[:, None], sb2[None, :], device=args.device, show_progress=False), args)
    result["grid_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result["grid_min_seconds"] = grid_min_s
    n_points = args.n * args.n
    engine_us = 1e6 * grid_s / n_points
    result.update(grid_points=n_points, grid_seconds=grid_s, engine_us_per_point=engine_us,
                  phases={p: int((mf.phase == p).sum()) for p in ("ordered", "critical", "chaotic", "unbounded")})
    rows.append(("deepprop mean_field", f"{n_points} grid points", grid_s, engine_us, 1.0, "-"))
    if args.only == "grid":
        return

    rng = np.random.default_rng(0)
    i = rng.integers(0, args.n, args.peer_points)
    j = rng.integers(0, args.n, args.peer_points)
    t0 = time.perf_counter()
    peer = [peer_point(float(sw2[a]), float(sb2[b])) for a, b in zip(i, j, strict=True)]
    peer_us = 1e6 * (time.perf_counter() - t0) / len(peer)
    acc = {k: _max_rel([p[k] for p in peer], getattr(mf, k)[i, j]) for k in QUANTITIES}
    result.update(simple_peer_points=len(peer), simple_peer_us_per_point=peer_us, simple_peer_max_rel_diff=acc,
                  ratio_vs_simple_peer=peer_us / engine_us)
    rows.append(("simple peer (GH-61 + brentq, per point)", f"{len(peer)} random grid points", None, peer_us,
                 peer_us / engine_us, max(acc.values())))

    k = min(args.vec_points, len(i))
    t0 = time.perf_counter()
    vec = peer_vectorised(sw2[i[:k]], sb2[j[:k]])
    vec_us = 1e6 * (time.perf_counter() - t0) / k
    vacc = {q: _max_rel(vec[q], getattr(mf, q)[i[:k], j[:k]]) for q in QUANTITIES}
    result.update(numpy_peer_points=k, numpy_peer_us_per_point=vec_us, numpy_peer_max_rel_diff=vacc)
    rows.append(("numpy-vectorised peer", f"{k} random grid points", None, vec_us, vec_us / engine_us,
                 max(vacc.values())))

    if args.quad_points:
        t0 = time.perf_counter()
        quad = [quad_point(float(sw2[a]), float(sb2[b])) for a, b in zip(i[:args.quad_points], j[:args.quad_points],
                                                                        strict=True)]
        quad_us = 1e6 * (time.perf_counter() - t0) / len(quad)
        qacc = max(_max_rel([p[q] for p in quad], getattr(mf, q)[i[:len(quad)], j[:len(quad)]])
                   for q in ("q_star", "c_star", "chi1"))
        result.update(scipy_quad_us_per_point=quad_us, scipy_quad_max_rel_diff=qacc)
        rows.append(("scipy quad (footnote)", f"{len(quad)} random grid points", None, quad_us, quad_us / engine_us,
                     qacc))


def bench_trajectory(args, rows: list, result: dict) -> None:
    side = int(round(math.sqrt(args.traj_points)))
    sw2, sb2 = _grid(side)
    dt, dt_min, _ = _timed(
        lambda: trajectory("tanh", sw2[:, None], sb2[None, :], q0=1.0, c0=0.5, depth=args.depth, device=args.device),
        args)
    result["trajectory_distinct_us_per_point"] = 1e6 * dt / side**2
    result["trajectory_distinct_min_us_per_point"] = 1e6 * dt_min / side**2
    rows.append((f"deepprop trajectory tanh L={args.depth}", f"{side}x{side} distinct priors", dt,
                 1e6 * dt / side**2, None, "-"))
    c0 = np.linspace(-0.99, 0.99, side * side)
    dt, dt_min, _ = _timed(lambda: trajectory("tanh", 2.0, 0.05, q0=1.0, c0=c0, depth=args.depth, device=args.device),
                           args)
    result["trajectory_shared_prior_us_per_point"] = 1e6 * dt / c0.size
    result["trajectory_shared_prior_min_us_per_point"] = 1e6 * dt_min / c0.size
    rows.append((f"deepprop trajectory tanh L={args.depth}", f"1 prior x {c0.size} c0", dt, 1e6 * dt / c0.size,
                 None, "-"))


def bench_neural_tangents(args, rows: list, result: dict) -> None:
    if not os.path.exists(args.nt_python):
        result["neural_tangents"] = f"skipped: {args.nt_python} not found"
        rows.append(("neural-tangents NNGP", "skipped (no environment)", None, None, None, "-"))
        return
    side = int(round(math.sqrt(args.nt_points)))
    sw2, sb2 = (a.reshape(-1) for a in np.meshgrid(*_grid(side), indexing="ij"))
    c = 0.5
    with tempfile.TemporaryDirectory() as tmp:
        grid, out = os.path.join(tmp, "grid.npz"), os.path.join(tmp, "nt.npz")
        np.savez(grid, sigma_w2=sw2, sigma_b2=sb2, c=c, depth=args.depth)
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "nt_peer.py")
        cmd = [args.nt_python, script, "--grid", grid, "--out", out, "--deg200-points", str(args.nt_deg200_points)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
        if proc.returncode != 0:
            result["neural_tangents"] = "failed: " + proc.stderr.strip().splitlines()[-1]
            rows.append(("neural-tangents NNGP", "failed (see JSON)", None, None, None, "-"))
            return
        report = json.loads(proc.stdout.strip().splitlines()[-1])
        nt = dict(np.load(out))
    q0 = sw2 + sb2
    c0 = (sw2 * c + sb2) / q0
    result["neural_tangents"] = {"versions": report.get("jax"), "depth": args.depth, "runs": {}}
    for name in [k for k in report if k not in ("jax", "device", "depth")]:
        rep = report[name]
        n = rep["points"]
        act = "tanh" if name.startswith("tanh") else name
        # nt_peer reports the best of its repeated runs: deepprop's best of --repeat runs beside it
        _, best_s, (q, cc) = _timed(lambda: trajectory(act, sw2[:n], sb2[:n], q0=q0[:n], c0=c0[:n],  # noqa: B023
                                                       depth=args.depth), args)
        dp_us = 1e6 * best_s / n
        qa, qab = q[:, -1], q[:, -1] * cc[:, -1]
        err = max(_max_rel(nt[f"{name}_q"], qa), _max_rel(nt[f"{name}_qab"], qab))
        rep.update(deepprop_us_per_point=dp_us, max_rel_diff_vs_deepprop=err)
        result["neural_tangents"]["runs"][name] = rep
        work = f"{n} grid points (1st call {rep['first_call_s']:.1f} s)"
        rows.append((f"neural-tangents NNGP {name} L={args.depth}", work, rep["run_s"], rep["us_per_point"],
                     rep["us_per_point"] / dp_us, err))
        rows.append((f"  deepprop trajectory {act} L={args.depth}", f"same {n} points", None, dp_us, 1.0, "-"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="mean_field grid is n x n (default 1000: 1e6 points)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--repeat", type=int, default=3,
                   help="deepprop runs per figure; the median is reported, the min goes to the JSON (default 3)")
    p.add_argument("--only", choices=["grid", "meanfield", "trajectory", "nt"],
                   help="run one part: grid (mean_field alone), meanfield (with its peers), trajectory, nt")
    p.add_argument("--peer-points", type=int, default=200, help="grid points timed with the simple peer")
    p.add_argument("--vec-points", type=int, default=200, help="grid points timed with the numpy peer")
    p.add_argument("--quad-points", type=int, default=1, help="grid points timed with scipy quad (0: skip)")
    p.add_argument("--traj-points", type=int, default=100_000, help="trajectories (a square grid)")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--nt-python", default=DEFAULT_NT_PYTHON, help="python of an environment with neural-tangents")
    p.add_argument("--nt-points", type=int, default=10_000, help="grid points for the neural-tangents comparison")
    p.add_argument("--nt-deg200-points", type=int, default=1000, help="points for tanh at deg 200")
    p.add_argument("--json", help="also write the figures to this JSON file")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    result = {
        "date": time.strftime("%Y-%m-%d"),
        "device": args.device if args.device == "cpu" else torch.cuda.get_device_name(),
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "command": " ".join(["python"] + sys.argv),
    }
    rows: list = []
    if args.only in (None, "grid", "meanfield"):
        bench_grid(args, rows, result)
    if args.only in (None, "trajectory"):
        bench_trajectory(args, rows, result)
    if args.only in (None, "nt"):
        bench_neural_tangents(args, rows, result)

    print(f"{result['date']}  device={result['device']}  torch threads={result['threads']}  {result['command']}")
    if "grid_peak_rss_mb" in result:
        print(f"peak RSS after the grid (imports included): {result['grid_peak_rss_mb']:.0f} MB")
    head = ("what", "work", "total s", "us / point", "x deepprop", "max rel diff vs deepprop")
    print(f"{head[0]:<44} {head[1]:<38} {head[2]:>9} {head[3]:>12} {head[4]:>11}  {head[5]}")
    for what, work, total, us, ratio, err in rows:
        tot = f"{total:.3f}" if total is not None else "-"
        us_s = f"{us:.2f}" if us is not None else "-"
        ratio_s = f"{ratio:.1f}" if ratio is not None else "-"
        err_s = f"{err:.1e}" if isinstance(err, float) else err
        print(f"{what:<44} {work:<38} {tot:>9} {us_s:>12} {ratio_s:>11}  {err_s}")
    print("x deepprop: the row's time per point over deepprop's in this run (for trajectories: over the"
          " deepprop row below it).")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2, default=float)


if __name__ == "__main__":
    main()
