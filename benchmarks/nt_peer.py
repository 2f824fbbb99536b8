"""neural-tangents as a peer: the NNGP kernel of a depth-L fully connected network over a grid.

Runs in its OWN environment (neural-tangents is never a dependency of deepprop; 0.6.5 imports with
jax/jaxlib 0.4.30 and tf2jax 0.3.6), e.g.::

    python3 -m venv /tmp/ntvenv
    /tmp/ntvenv/bin/pip install "jax[cpu]==0.4.30" jaxlib==0.4.30 tf2jax==0.3.6 neural-tangents==0.6.5
    /tmp/ntvenv/bin/python benchmarks/nt_peer.py --grid grid.npz --out nt.npz

``grid.npz`` holds flat arrays sigma_w2, sigma_b2 and scalars c (input cosine) and depth. Two inputs
x1, x2 in R^2 with |x|^2 / 2 = 1 and x1.x2 / 2 = c give layer-0 pre-activations with
q0 = sigma_w2 + sigma_b2 and correlation (sigma_w2 c + sigma_b2) / q0; the network is
Dense, (activation, Dense) x depth, so the NNGP entries are q^depth and q_ab^depth of eq. 3 and 4.
bench_engine.py writes the grid, calls this script and compares with deepprop.trajectory.

For each activation (relu and erf in closed form, tanh by ElementwiseNumerical at each --deg) the
script reports the first call (trace + XLA compile + run) and the best of the repeated runs separately.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--deg", default="25,200", help="ElementwiseNumerical degrees for tanh")
    p.add_argument("--deg200-points", type=int, default=2000, help="points for deg >= 100 (memory: deg^2 per point)")
    p.add_argument("--batch", type=int, default=4096)
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    warnings.filterwarnings("ignore")
    from neural_tangents import stax

    g = np.load(args.grid)
    sw2, sb2 = g["sigma_w2"], g["sigma_b2"]
    c, depth = float(g["c"]), int(g["depth"])
    activations = {"relu": stax.Relu, "erf": stax.Erf}
    for deg in (int(d) for d in args.deg.split(",") if d):
        activations[f"tanh_deg{deg}"] = lambda deg=deg: stax.ElementwiseNumerical(jnp.tanh, deg=deg)

    def kernel(a, b, act):
        ws, bs = jnp.sqrt(a), jnp.sqrt(b)
        layers = [stax.Dense(1, W_std=ws, b_std=bs)]
        for _ in range(depth):
            layers += [act(), stax.Dense(1, W_std=ws, b_std=bs)]
        _, _, kernel_fn = stax.serial(*layers)
        x = jnp.sqrt(2.0) * jnp.array([[1.0, 0.0], [c, np.sqrt(1 - c * c)]])
        k = kernel_fn(x, None, "nngp")
        return k[0, 0], k[0, 1]

    out, report = {}, {"jax": jax.__version__, "device": str(jax.devices()[0]), "depth": depth}
    for name, act in activations.items():
        n = sw2.size if not name.startswith("tanh_deg") or int(name[8:]) < 100 else min(sw2.size, args.deg200_points)
        batch = min(n, args.batch if n == sw2.size else 256)
        fn = jax.jit(jax.vmap(lambda a, b, act=act: kernel(a, b, act)))
        pad = (-n) % batch
        a = np.concatenate([sw2[:n], np.full(pad, sw2[0])])
        b = np.concatenate([sb2[:n], np.full(pad, sb2[0])])
        t0 = time.perf_counter()
        jax.block_until_ready(fn(a[:batch], b[:batch]))
        first = time.perf_counter() - t0
        best = np.inf
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            parts = [fn(a[i:i + batch], b[i:i + batch]) for i in range(0, a.size, batch)]
            jax.block_until_ready(parts)
            best = min(best, time.perf_counter() - t0)
        q = np.concatenate([np.asarray(p[0]) for p in parts])[:n]
        qab = np.concatenate([np.asarray(p[1]) for p in parts])[:n]
        out[f"{name}_q"], out[f"{name}_qab"] = q, qab
        report[name] = {"points": n, "first_call_s": first, "run_s": best, "us_per_point": 1e6 * best / n}
    np.savez(args.out, **out)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
