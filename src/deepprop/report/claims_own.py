"""deepprop's own claims: finite-width agreement and the accuracy of the mean-field engine."""

from __future__ import annotations

import math

import numpy as np

from deepprop.report.context import Context
from deepprop.report.registry import Measurement, claim
from deepprop.report.verdict import Tolerance

POINTS = ((1.2, 0.05), (1.76, 0.05), (2.5, 0.05))


@claim(
    "own-finite-width",
    source="deepprop: mean-field recursions (eq. 3-4) against finite random networks",
    statement="In tanh networks of width 1000, the measured q^l and c^l follow the mean-field recursions layer by "
              "layer in the ordered, critical and chaotic phases.",
    paper_says="(the papers' large-width assumption: eq. 3-4 describe wide random networks)",
    paper={"q_max_rel_dev": 0.0, "c_max_abs_dev": 0.0},
    tolerance={"q_max_rel_dev": Tolerance("abs", 0.03, "O(1/N) finite-width bias plus the ensemble's sampling noise"),
               "c_max_abs_dev": Tolerance("abs", 0.03, "O(1/N) finite-width bias plus the ensemble's sampling noise")},
    sizes={"smoke": {"width": 100, "depth": 8, "networks": 2}, "quick": {"width": 1000, "depth": 15, "networks": 8},
           "paper": {"width": 1000, "depth": 40, "networks": 16}},
)
def finite_width(ctx: Context) -> Measurement:
    from deepprop.plots.report import Panel, Series, panels_figure
    from deepprop.simulate import simulate_forward

    s = ctx.sizes
    qd, cd, qs, cs, rows = 0.0, 0.0, [], [], []
    for k, (sw2, sb2) in enumerate(POINTS):
        r = simulate_forward("tanh", sw2, sb2, width=s["width"], depth=s["depth"], q0=0.8, c0=0.6,
                             networks=s["networks"], pairs=8, seed=k, device=ctx.device)
        qd = max(qd, float(np.max(np.abs(r.q / r.q_theory - 1))))
        cd = max(cd, float(np.max(np.abs(r.c - r.c_theory))))
        qs += [Series(r.layers, r.q, f"sw2={sw2}", "o", yerr=r.q_err, color=f"C{k}"),
               Series(r.layers, r.q_theory, None, "-", color=f"C{k}")]
        cs += [Series(r.layers, r.c, f"sw2={sw2}", "o", yerr=r.c_err, color=f"C{k}"),
               Series(r.layers, r.c_theory, None, "-", color=f"C{k}")]
        rows += [(sw2, int(l), r.q[i], r.q_theory[i], r.c[i], r.c_theory[i]) for i, l in enumerate(r.layers)]
    a = np.array(rows)
    data = [ctx.save_csv({"sigma_w2": a[:, 0], "layer": a[:, 1], "q": a[:, 2], "q_theory": a[:, 3], "c": a[:, 4],
                          "c_theory": a[:, 5]})]
    path, rel = ctx.figure_path()
    panels_figure(path, [Panel(qs, f"q^l, width {s['width']} (lines: theory)", "layer l", "q^l"),
                         Panel(cs, "c^l", "layer l", "c^l")])
    return Measurement(ours={"q_max_rel_dev": qd, "c_max_abs_dev": cd}, figure=[rel], data=data,
                       note=f"width {s['width']}, depth {s['depth']}, {s['networks']} networks x 8 pairs, "
                            "sigma_b^2 0.05")


def _quad_expect(f, q: float) -> float:
    """E[f(sqrt(q) z)], z ~ N(0, 1), by adaptive quadrature (scipy.integrate.quad)."""
    from scipy.integrate import quad

    g = lambda z: f(math.sqrt(q) * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
    return quad(g, -12, 0, epsabs=1e-14, epsrel=1e-13, limit=200)[0] + \
        quad(g, 0, 12, epsabs=1e-14, epsrel=1e-13, limit=200)[0]


def _independent_point(sw2: float, sb2: float) -> dict[str, float]:
    """q*, chi1 and the chaotic c* of tanh by quadrature and Gauss-Hermite, without the engine."""
    from scipy.optimize import brentq

    q = 1.0
    for _ in range(2000):
        q_new = sw2 * _quad_expect(lambda u: math.tanh(u) ** 2, q) + sb2
        if abs(q_new - q) < 1e-15:
            break
        q = q_new
    chi1 = sw2 * _quad_expect(lambda u: 1.0 / math.cosh(u) ** 4, q)
    z, w = np.polynomial.hermite_e.hermegauss(300)
    w = w / math.sqrt(2 * math.pi)
    z1, z2 = np.meshgrid(z, z, indexing="ij")
    ww = np.outer(w, w)

    def cmap(c: float) -> float:
        u1 = math.sqrt(q) * z1
        u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
        return (sw2 * float((ww * np.tanh(u1) * np.tanh(u2)).sum()) + sb2) / q

    if chi1 <= 1:
        c_star = 1.0
    elif abs(cmap(0.0)) < 1e-13:  # odd activation without bias: c = 0 is the chaotic fixed point
        c_star = 0.0
    else:
        c_star = brentq(lambda c: cmap(c) - c, 0.0, 1 - 1e-6, xtol=1e-14)
    return {"q_star": q, "chi1": chi1, "c_star": c_star}


@claim(
    "own-engine-accuracy",
    source="deepprop: the mean-field engine against independent quadrature",
    statement="The engine's q*, chi_1 and c* agree with adaptive quadrature (scipy.integrate.quad) and a 300-point "
              "Gauss-Hermite rule computed inside the claim, to 1e-9.",
    paper_says="(numerical accuracy of the integrals behind every figure)",
    paper={"q_star_max_rel_err": 0.0, "chi1_max_rel_err": 0.0, "c_star_max_abs_err": 0.0},
    tolerance={k: Tolerance("abs", 1e-9, "double-precision quadrature; both sides converge far below this")
               for k in ("q_star_max_rel_err", "chi1_max_rel_err", "c_star_max_abs_err")},
    sizes={t: {} for t in ("smoke", "quick", "paper")},
)
def engine_accuracy(ctx: Context) -> Measurement:
    from deepprop.theory.meanfield import mean_field

    pts = ((1.2, 0.05), (2.5, 0.05), (4.0, 0.3), (1.5, 0.0))
    rows = []
    for sw2, sb2 in pts:
        ind = _independent_point(sw2, sb2)
        mf = mean_field("tanh", sw2, sb2, show_progress=False)
        rows.append((sw2, sb2, float(mf.q_star), ind["q_star"], float(mf.chi1), ind["chi1"], float(mf.c_star),
                     ind["c_star"]))
    a = np.array(rows)
    ours = {"q_star_max_rel_err": float(np.max(np.abs(a[:, 2] / a[:, 3] - 1))),
            "chi1_max_rel_err": float(np.max(np.abs(a[:, 4] / a[:, 5] - 1))),
            "c_star_max_abs_err": float(np.max(np.abs(a[:, 6] - a[:, 7])))}
    data = [ctx.save_csv({"sigma_w2": a[:, 0], "sigma_b2": a[:, 1], "q_star_engine": a[:, 2], "q_star_quad": a[:, 3],
                          "chi1_engine": a[:, 4], "chi1_quad": a[:, 5], "c_star_engine": a[:, 6],
                          "c_star_quad": a[:, 7]})]
    return Measurement(ours=ours, data=data, note="tanh at 4 points across ordered, chaotic and sigma_b^2 = 0")
