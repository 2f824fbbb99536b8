"""The finite-width runs behind the simulation figures (``deepprop figures --simulation``).

Each function runs its ensembles (and the theory beside them) and returns a small record of what the figure
shows; :mod:`deepprop.plots.simulation` and :mod:`deepprop.plots.critical_init` only draw those records.
They mirror figs. 1b/c (residuals |q^l - q*|, |c^l - c*|), 2b/c (xi_q, xi_c measured vs theory), 3b/c (c* and
xi_c with dropout), 4a/b (gradient norms by layer, xi_grad), the Jacobian singular-value spectrum (Gaussian vs
orthogonal at criticality) with the channel mutual information across sigma_w2, and noisy ReLU networks at
their noise-aware critical initialisation (follow-ups section 1). Sizes are arguments: the defaults run in
about a minute each on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from deepprop.advice import critical_init
from deepprop.prior import NetworkPrior, Noise
from deepprop.simulate.forward import ForwardResult, simulate_forward
from deepprop.simulate.gradients import GradientResult, simulate_gradients
from deepprop.simulate.jacobian import JacobianResult, jacobian_spectrum
from deepprop.theory.meanfield import MeanField, critical_sigma_w2, mean_field, trajectory

SB2 = 0.05
SW2_FIT = tuple(np.linspace(0.8, 4.0, 9))
SW2_DROP = tuple(np.linspace(1.0, 4.0, 7))
SW2_GRAD = tuple(np.linspace(1.0, 4.0, 13))
SW2_JAC = tuple(np.linspace(0.8, 3.0, 12))
FIG1_Q0 = 0.8  # the figures' own start (fig. 1 of the paper), passed explicitly


def tanh(sigma_w2: Any, **noise: Any) -> NetworkPrior:
    """The tanh prior of the figures at sigma_b2 = 0.05."""
    return NetworkPrior.build("tanh", sigma_w2, SB2, **noise)


@dataclass
class ForwardRun:
    """One sigma_w2 of fig. 1b/c: the measurement, the fixed points and the theory's trajectory."""

    sigma_w2: float
    result: ForwardResult
    q_star: float
    c_star: float
    q_theory: np.ndarray
    c_theory: np.ndarray


@dataclass
class Residuals:
    runs: list[ForwardRun]
    width: int


def forward_residuals(sweep=(1.0, 1.5, 2.5, 4.0), width: int = 500, depth: int = 20, networks: int = 4,
                      device: str = "cpu") -> Residuals:
    """Figs. 1b/c: per sigma_w2, q^l and c^l of ``networks`` networks beside the theory."""
    runs = []
    for sw2 in sweep:
        r = simulate_forward(tanh(sw2), width=width, depth=depth, networks=networks, pairs=16, q0=FIG1_Q0,
                             dtype="float32", device=device)
        mf = mean_field(tanh(sw2))
        q_th, c_th = (np.ravel(a) for a in trajectory(tanh(sw2), q0=FIG1_Q0, c0=0.6, depth=depth))
        runs.append(ForwardRun(sw2, r, float(mf.q_star), float(mf.c_star), q_th, c_th))
    return Residuals(runs, width)


@dataclass
class DepthScaleFits:
    """Figs. 2b/c: the theory's xi_q, xi_c on a fine sigma_w2 grid and the fitted ones on the sweep."""

    fine: np.ndarray
    theory: MeanField
    sweep: tuple[float, ...]
    xi_q_fits: list[float]
    xi_c_fits: list[float]
    width: int


def depth_scale_fits(sweep=SW2_FIT, width: int = 300, depth: int = 30, networks: int = 4,
                     device: str = "cpu") -> DepthScaleFits:
    """xi_q and xi_c fitted from simulations. xi_q is only 1-2 layers, so the variance residual reaches the
    finite-width noise floor within a few layers: its networks start at q0 = 1.3 q* (inside the linear
    regime the asymptotic theory describes), at width 1000 and with more samples, so that enough layers
    lie above the floor."""
    fine = np.linspace(0.5, 4.0, 200)
    q_star = mean_field(tanh(np.asarray(sweep))).q_star
    xi_q_fits = [
        simulate_forward(tanh(s), width=1000, depth=12, networks=2 * networks, pairs=32, q0=1.3 * float(qs),
                         c0=0.6, dtype="float64", device=device).xi_q_fit
        for s, qs in zip(sweep, q_star, strict=True)
    ]
    xi_c_fits = [simulate_forward(tanh(s), width=width, depth=depth, networks=networks, pairs=16, q0=FIG1_Q0,
                                  dtype="float32", device=device).xi_c_fit for s in sweep]
    return DepthScaleFits(fine, mean_field(tanh(fine)), tuple(sweep), xi_q_fits, xi_c_fits, width)


@dataclass
class DropoutRun:
    """Figs. 3b/c at one keep rate: the theory on a fine grid and the measured c* (mean of the last quarter of
    the layers, with its error) and xi_c on the sweep."""

    keep_rate: float
    theory: MeanField
    c_star: list[float]
    c_star_err: list[float]
    xi_c: list[float]


@dataclass
class DropoutScan:
    fine: np.ndarray
    sweep: tuple[float, ...]
    runs: list[DropoutRun] = field(default_factory=list)
    width: int = 0


def dropout_scan(keep_rates=(1.0, 0.95, 0.8), sweep=SW2_DROP, width: int = 500, depth: int = 60,
                 networks: int = 3, device: str = "cpu") -> DropoutScan:
    """c* and xi_c against sigma_w2 for several keep rates. Without dropout xi_c reaches ~20 near the
    transition, hence depth 60."""
    fine = np.linspace(1.0, 4.0, 150)
    scan = DropoutScan(fine, tuple(sweep), width=width)
    tail = slice(3 * depth // 4, depth + 1)
    for rho in keep_rates:
        run = DropoutRun(rho, mean_field(tanh(fine, keep_rate=rho)), [], [], [])
        for s in sweep:
            r = simulate_forward(tanh(s, keep_rate=rho), width=width, depth=depth, networks=networks, pairs=16,
                                 q0=1.0, c0=0.6, dtype="float32", device=device)
            run.c_star.append(r.c[tail].mean())
            run.c_star_err.append(np.nanmean(r.c_err[tail]))
            run.xi_c.append(r.xi_c_fit)
        scan.runs.append(run)
    return scan


@dataclass
class GradientScan:
    """Figs. 4a/b: gradient norms by layer over a sigma_w2 sweep, and the theory's chi1 on a fine grid."""

    result: GradientResult
    sweep: tuple[float, ...]
    fine: np.ndarray
    chi1: np.ndarray
    width: int
    depth: int
    backprop: str


def gradient_scan(sweep=SW2_GRAD, width: int = 150, depth: int = 80, networks: int = 2, backprop: str = "shared",
                  device: str = "cpu") -> GradientScan:
    """||dE/dW^l||^2 by layer on digits (cross-entropy) for each sigma_w2."""
    res = simulate_gradients(tanh(np.asarray(sweep)), width=width, depth=depth, networks=networks,
                             backprop=backprop, device=device, progress=True)
    fine = np.linspace(1.0, 4.0, 300)
    return GradientScan(res, tuple(sweep), fine, mean_field(tanh(fine)).chi1, width, depth, backprop)


@dataclass
class SpectrumScan:
    """Jacobian spectra at criticality and the channel information across sigma_w2, per weight kind."""

    critical_sigma_w2: float
    sigma_b2: float
    at_critical: dict[str, Any]
    sweep: tuple[float, ...]
    scans: dict[str, JacobianResult]
    width: int
    depth: int


def spectrum_scan(width: int = 200, depth: int = 16, sweep=SW2_JAC, networks: int = 2,
                  device: str = "cpu") -> SpectrumScan:
    """Singular values (Gaussian vs orthogonal) at chi1 = 1 and mutual information vs sigma_w2 (sigma_b2 = 1e-3)."""
    sb2 = 1e-3
    base = NetworkPrior.build("tanh", 1.0, sb2)
    sw_c = float(critical_sigma_w2(base))
    at_critical, scans = {}, {}
    for kind in ("gaussian", "orthogonal"):
        at_critical[kind] = jacobian_spectrum(base.replace(sigma_w2=sw_c), width=width, depth=depth, weights=kind,
                                              networks=networks, device=device).points[0]
        scans[kind] = jacobian_spectrum(base.replace(sigma_w2=np.asarray(sweep)), width=width, depth=depth,
                                        weights=kind, networks=networks, device=device)
    return SpectrumScan(sw_c, sb2, at_critical, tuple(sweep), scans, width, depth)


NOISY_RELU_SETTINGS = (
    ("dropout keep 0.8", Noise(keep_rate=0.8)),
    ("dropout keep 0.6", Noise(keep_rate=0.6)),
    ("Gaussian s = 0.25", Noise(1.0, 0.25)),  # multiplicative N(1, s^2)
)


@dataclass
class NoisyReluRun:
    """One noise setting: the advice's sigma_w2 and c*, and a forward run per starting correlation."""

    label: str
    sigma_w2: float
    c_star: float
    runs: list[ForwardResult]


@dataclass
class NoisyRelu:
    settings: list[NoisyReluRun]
    width: int
    networks: int


def noisy_relu(width: int = 1000, networks: int = 8, depth: int = 20, seed: int = 0,
               device: str | None = None) -> NoisyRelu:
    """Finite ReLU networks with dropout or multiplicative Gaussian noise at sigma_w^2 = 2/mu2, sigma_b^2 = 0,
    from two starting correlations (0.95, 0.05) at q0 = 1: q^l stays at q0 and c^l converges to c* < 1."""
    out = []
    for label, noise in NOISY_RELU_SETTINGS:
        prior = NetworkPrior("relu", 1.0, 0.0, noise)
        advice = critical_init(prior)
        runs = [simulate_forward(prior.replace(sigma_w2=advice.sigma_w2), width=width, depth=depth, q0=1.0,
                                 c0=c_start, networks=networks, pairs=4, seed=seed + j, device=device)
                for j, c_start in enumerate((0.95, 0.05))]
        out.append(NoisyReluRun(label, advice.sigma_w2, advice.c_star, runs))
    return NoisyRelu(out, width, networks)
