"""Forward signal propagation in finite random networks (figs. 1b/c, 2b/c, 3b/c of the paper).

For every network of the ensemble and every input pair (a, b), layer-0 pre-activations are drawn
with EXACTLY the requested statistics, (1/N)|z_a|^2 = (1/N)|z_b|^2 = q0 and z_a.z_b / N = q0 c0
(orthonormalised Gaussian directions), then

    z^l = W^l noise(phi(z^{l-1})) + b^l,        l = 1 .. depth,

and at each layer the ensemble measures q^l = (1/N) sum_i (z_i^l)^2 (averaged over both inputs) and
c^l = z_a.z_b / sqrt(|z_a|^2 |z_b|^2) (averaged over pairs), with standard errors over the
networks. Layer l is comparable with the engine's ``trajectory(...)[..., l]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from deepprop.errors import ParameterError
from deepprop.networks import Ensemble, haar_orthogonal
from deepprop.prior import Network
from deepprop.results import Result
from deepprop.simulate import _theory
from deepprop.simulate._report import stats_over_networks
from deepprop.simulate.fitting import fit_exponential_approach, fit_relaxation, relaxation_jackknife
from deepprop.theory.meanfield import DEFAULT_C0, DEFAULT_Q0
from deepprop.validation import array_bytes, check_memory_terms, check_number, check_positive, check_positive_int


def initial_pairs(ens: Ensemble, gen: torch.Generator, pairs: int, q0: float, c0: float) -> torch.Tensor:
    """Layer-0 pre-activations, shape (batch, N, 2 * pairs): columns 2p, 2p+1 are pair p.

    Each pair has exact empirical second moments q0 (both inputs) and exact correlation c0.
    """
    n = ens.width
    g = torch.randn((ens.batch * pairs, n, 2), generator=gen, device=ens.device, dtype=ens.dtype)
    u = haar_orthogonal(g)  # (batch*pairs, N, 2): a Haar-random orthonormal pair of directions
    scale = math.sqrt(q0 * n)
    za = scale * u[..., 0]
    zb = scale * (c0 * u[..., 0] + math.sqrt(max(1.0 - c0 * c0, 0.0)) * u[..., 1])
    z = torch.stack((za, zb), dim=-1).view(ens.batch, pairs, n, 2)
    return z.permute(0, 2, 1, 3).reshape(ens.batch, n, 2 * pairs)


def pair_statistics(z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per network: q averaged over all inputs (batch,) and c of each pair (batch, pairs)."""
    qi = (z * z).mean(dim=1)  # (batch, 2P)
    za, zb = z[..., 0::2], z[..., 1::2]
    qab = (za * zb).mean(dim=1)
    c = qab / torch.sqrt(qi[:, 0::2] * qi[:, 1::2])
    return qi.mean(dim=1), c


def propagate_pairs(ens: Ensemble, gen: torch.Generator, z: torch.Tensor, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Run layer-0 pre-activations z (batch, N, 2P) through ``depth`` fresh layers; per network q^l
    (batch, depth + 1), averaged over all inputs, and per pair c^l (batch, P, depth + 1)."""
    q_net = np.empty((ens.batch, depth + 1))
    c_net = np.empty((ens.batch, z.shape[-1] // 2, depth + 1))
    for l in range(depth + 1):
        if l > 0:
            w, b = ens.draw_weights(gen), ens.draw_bias(gen)
            y, _ = ens.layer_input(z, gen)
            z = torch.baddbmm(b, w, y)
        q_l, c_l = pair_statistics(z)
        q_net[:, l] = q_l.cpu().numpy()
        c_net[:, :, l] = c_l.cpu().numpy()
    return q_net, c_net


FIT_KEYS = {
    "xi_q_fit_err": "jackknife standard error of xi_q_fit over networks (leave one out, same layer window); "
                    "NaN with fewer than 3 networks. Against the scatter over 16 seeds (tanh, sigma_w2 1.5, width "
                    "100-200, 8 networks) it was 1.5-1.8x too small: xi_q's window is a few correlated layers",
    "xi_c_fit_err": "the same for xi_c_fit (within 10 % of the 16-seed scatter in that check)",
    "xi_q_fit_reason": "why xi_q_fit is NaN or not a relaxation (None when it is a measurement)",
    "xi_c_fit_reason": "the same for xi_c_fit",
    "xi_c_fit_free": "xi_c from c^l = c_inf + A exp(-l / xi) with c_inf free (blind to the O(1/N) shift of the "
                     "finite network's own fixed point)",
    "xi_c_fit_free_err": "jackknife standard error of xi_c_fit_free over networks",
    "c_star_fit": "the fitted c_inf of that fit",
    "xi_c_fit_free_reason": "why the free-asymptote fit failed (None on success)",
    "xi_c_fit_free_theory": "the same 3-parameter fit of the infinite-width trajectory (the window / transient "
                            "part of any difference from xi_c)",
}
"""The keys of :attr:`ForwardResult.fits` (also top-level keys of its JSON)."""


@dataclass
class ForwardResult(Result):
    """Layer-by-layer q^l, c^l of a finite ensemble, with the theory and fitted depth scales.

    ``xi_q_fit`` / ``xi_c_fit``: depth scales of |q^l - q*| and |c^l - c*| (q*, c* of the theory), fitted
    log-linearly over the leading layers above the noise floor; ``fits`` holds their error bars, the reasons
    a fit failed and a second, free-asymptote estimator of xi_c (keys and meaning: :data:`FIT_KEYS`).
    """

    layers: np.ndarray
    q: np.ndarray
    q_err: np.ndarray
    c: np.ndarray
    c_err: np.ndarray
    q_theory: np.ndarray | None
    c_theory: np.ndarray | None
    xi_q_fit: float
    xi_c_fit: float
    theory: dict[str, Any] | None
    params: dict[str, Any] = field(default_factory=dict)
    fits: dict[str, Any] = field(default_factory=dict)  # keys: FIT_KEYS

    def to_dataframe(self):
        """A ``pandas.DataFrame`` with one row per layer: ``layer``, ``q``, ``q_err``, ``c``, ``c_err`` and, with
        a theory, ``q_theory`` and ``c_theory``; the fitted depth scales and the theory's numbers are in
        ``.attrs``."""
        import pandas as pd

        columns = {"layer": np.asarray(self.layers), "q": self.q, "q_err": self.q_err, "c": self.c,
                   "c_err": self.c_err}
        if self.q_theory is not None:
            columns.update(q_theory=self.q_theory, c_theory=self.c_theory)
        frame = pd.DataFrame(columns)
        frame.attrs.update({"xi_q_fit": self.xi_q_fit, "xi_c_fit": self.xi_c_fit, **self.fits,
                            **(self.theory or {})})
        return frame

    def __repr__(self) -> str:  # a summary; to_dataframe() holds the layers
        theory = "" if not self.theory else (f", xi_q={self.theory.get('xi_q', math.nan):.4g}, "
                                             f"xi_c={self.theory.get('xi_c', math.nan):.4g}")
        return (f"ForwardResult({len(self.layers)} layers, xi_q_fit={self.xi_q_fit:.4g}, "
                f"xi_c_fit={self.xi_c_fit:.4g}{theory})")

    @property
    def xi_q_fit_err(self) -> float:
        return self.fits.get("xi_q_fit_err", math.nan)

    @property
    def xi_c_fit_err(self) -> float:
        return self.fits.get("xi_c_fit_err", math.nan)

    def record(self) -> dict[str, Any]:
        """The CLI's JSON: layers [{layer, q, q_err, q_theory, c, c_err, c_theory}], fits and theory."""
        rows = []
        for i, l in enumerate(self.layers):
            rows.append({
                "layer": int(l),
                "q": self.q[i], "q_err": self.q_err[i],
                "q_theory": None if self.q_theory is None else self.q_theory[i],
                "c": self.c[i], "c_err": self.c_err[i],
                "c_theory": None if self.c_theory is None else self.c_theory[i],
            })
        th = self.theory or {}
        return {
            "layers": rows,
            "xi_q_fit": self.xi_q_fit,
            "xi_c_fit": self.xi_c_fit,
            **self.fits,
            "xi_q": th.get("xi_q"),
            "xi_c": th.get("xi_c"),
            "q_star": th.get("q_star"),
            "c_star": th.get("c_star"),
            "chi1": th.get("chi1"),
            "phase": th.get("phase"),
            "params": self.params,
        }


def simulate_forward(
    prior: Network,
    *loose: float,
    width: int,
    depth: int,
    q0: float = DEFAULT_Q0,
    c0: float = DEFAULT_C0,
    weights: str = "gaussian",
    networks: int = 8,
    pairs: int = 16,
    seed: int = 0,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = "float64",
    with_theory: bool = True,
    **noise: float,
) -> ForwardResult:
    """Propagate ``pairs`` input pairs through ``networks`` random networks and measure q^l, c^l.

    ``simulate_forward(prior, width=N, depth=L)`` with a single-valued NetworkPrior, or the loose form
    ``simulate_forward("tanh", sigma_w2, sigma_b2, width=N, depth=L, keep_rate=...)``. Inputs start at
    variance ``q0`` and correlation ``c0`` (defaults :data:`~deepprop.theory.meanfield.DEFAULT_Q0` = 1,
    :data:`~deepprop.theory.meanfield.DEFAULT_C0` = 0.6). Depth scales are fitted from the residuals
    |q^l - q*|, |c^l - c*| (q*, c* from the engine when it is available, else the mean of the last quarter of
    the measurement) over the leading layers above the noise floor 3 * stderr + 1/N (relative for q), with
    jackknife error bars over the networks (see :class:`ForwardResult`).
    """
    c0 = check_number("c0", c0)
    ens = Ensemble.build(prior, *loose, width=width, networks=networks, weights=weights, device=device,
                         dtype=dtype, **noise)
    if len(ens.sigma_w2) != 1:
        raise ParameterError("sigma_w2", "must be a single value here")
    depth = check_positive_int("depth", depth)
    pairs = check_positive_int("pairs", pairs)
    q0 = check_positive("q0", q0)
    if not (math.isfinite(float(c0)) and -1.0 <= float(c0) <= 1.0):
        raise ParameterError("c0", f"must be in [-1, 1] (got {c0!r})")
    if ens.width < 2:
        raise ParameterError("width", f"must be >= 2 to hold a pair of distinct inputs (got {width!r})")
    itemsize = ens.dtype.itemsize  # one layer's weights (with the draw's temporaries), the pairs, the records
    check_memory_terms({"width": array_bytes((3 * ens.batch, ens.width, ens.width), itemsize=itemsize),
                        "pairs": array_bytes((8 * ens.batch, ens.width, 2 * pairs), itemsize=itemsize),
                        "depth": array_bytes((2 * ens.batch, pairs + 1, depth + 1))},
                       f"simulating {ens.batch} networks of width {ens.width} over {depth} layers", device=ens.device)

    gen = ens.generator(seed)
    with torch.no_grad():
        q_net, c_pairs = propagate_pairs(ens, gen, initial_pairs(ens, gen, pairs, q0, float(c0)), depth)
    c_net = c_pairs.mean(axis=1)

    q, q_err = stats_over_networks(q_net)
    c, c_err = stats_over_networks(c_net)
    layers = np.arange(depth + 1)
    theory = _theory.point(ens) if with_theory else None
    traj = _theory.trajectory(ens, q0, float(c0), depth) if with_theory else None
    theory = None if theory is None else {k: v.reshape(-1)[0] for k, v in theory.items()}

    tail = slice(max(1, 3 * (depth + 1) // 4), depth + 1)
    q_star = theory["q_star"] if theory is not None and np.isfinite(theory["q_star"]) else q[tail].mean()
    c_star = theory["c_star"] if theory is not None and np.isfinite(theory["c_star"]) else c[tail].mean()
    err_q = np.nan_to_num(q_err, nan=0.0)
    err_c = np.nan_to_num(c_err, nan=0.0)
    xi_q_fit, nq = fit_relaxation(layers, q - q_star, 3 * err_q + abs(q_star) / ens.width, start=0)
    xi_c_fit, nc = fit_relaxation(layers, c - c_star, 3 * err_c + 1.0 / ens.width, start=0)
    fits = {"xi_q_fit_err": relaxation_jackknife(layers, q_net, q_star, 3 * err_q + abs(q_star) / ens.width),
            "xi_c_fit_err": relaxation_jackknife(layers, c_net, c_star, 3 * err_c + 1.0 / ens.width),
            "xi_q_fit_reason": _relaxation_reason(xi_q_fit, nq), "xi_c_fit_reason": _relaxation_reason(xi_c_fit, nc)}
    # an invalid fit has no value (never a number, nor an error bar, beside a reason saying it is invalid)
    for name in ("xi_q_fit", "xi_c_fit"):
        if fits[f"{name}_reason"]:
            fits[f"{name}_err"] = math.nan
    xi_q_fit = math.nan if fits["xi_q_fit_reason"] else xi_q_fit
    xi_c_fit = math.nan if fits["xi_c_fit_reason"] else xi_c_fit
    guess = theory["xi_c"] if theory is not None and np.isfinite(theory["xi_c"]) else 5.0
    fits.update(free_asymptote_fit(layers, c_net, guess))
    if traj is not None:  # the same 3-parameter fit on the infinite-width trajectory: the window/transient part
        fits["xi_c_fit_free_theory"] = fit_exponential_approach(layers, traj[1][0], None, guess)[0]

    params = {
        "activation": ens.activation.name, "sigma_w2": ens.sigma_w2[0], "sigma_b2": ens.sigma_b2,
        "width": ens.width, "depth": depth, "q0": q0, "c0": float(c0), **ens.noise.numbers(),
        "weights": ens.weights,
        "networks": ens.networks, "pairs": pairs, "seed": int(seed), "device": str(ens.device),
        "dtype": str(ens.dtype).removeprefix("torch."),
    }
    return ForwardResult(
        layers=layers, q=q, q_err=q_err, c=c, c_err=c_err,
        q_theory=None if traj is None else traj[0][0], c_theory=None if traj is None else traj[1][0],
        xi_q_fit=xi_q_fit, xi_c_fit=xi_c_fit, theory=theory, params=params, fits=fits,
    )


def _relaxation_reason(xi: float, n_points: int) -> str | None:
    if n_points < 3:
        return f"only {n_points} layers stand above the noise floor (need 3)"
    if math.isfinite(xi) and xi < 0:
        return "the residual grows over the fit window (negative scale): no relaxation resolved above the noise floor"
    if not math.isfinite(xi):
        return "the residual does not decay over the fit window"
    return None


def free_asymptote_fit(layers: np.ndarray, c_net: np.ndarray, xi_guess: float) -> dict[str, Any]:
    """xi_c from c^l = c_inf + A exp(-l / xi) with c_inf free (the finite network's own fixed point), on the
    network mean weighted by its standard error; error by the jackknife over networks (leave one out)."""
    c, c_err = stats_over_networks(c_net)
    sig = None if not np.all(np.isfinite(c_err)) else c_err
    xi, c_inf, reason = fit_exponential_approach(layers, c, sig, xi_guess)
    err = math.nan
    k = c_net.shape[0]
    if reason is None and k >= 3:
        jack = []
        for i in range(k):
            rest = np.delete(c_net, i, axis=0)
            m, e = stats_over_networks(rest)
            jack.append(fit_exponential_approach(layers, m, e if np.all(np.isfinite(e)) else None, xi)[0])
        jack = np.array(jack)
        if np.all(np.isfinite(jack)):
            err = math.sqrt((k - 1) / k * float(((jack - jack.mean()) ** 2).sum()))
    return {"xi_c_fit_free": xi, "xi_c_fit_free_err": err, "c_star_fit": c_inf, "xi_c_fit_free_reason": reason}
