"""Independent reference computations for the engine tests.

Nothing here imports deepprop: activations are plain numpy functions, 1-D integrals use scipy's
adaptive quadrature (split at kinks), 2-D integrals use Gauss-Hermite at high degree for smooth
activations or nested adaptive quadrature for kinked ones, and fixed points use brentq.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import integrate, optimize, special

SELU_A, SELU_L = 1.6732632423543772, 1.0507009873554805


def _sig(x):
    return special.expit(x)


ACTS = {
    "tanh": (np.tanh, lambda x: 1 - np.tanh(x) ** 2, ()),
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0) * 1.0, (0.0,)),
    "erf": (special.erf, lambda x: 2 / math.sqrt(math.pi) * np.exp(-x * x), ()),
    "linear": (lambda x: x * 1.0, lambda x: np.ones_like(x), ()),
    "sigmoid": (_sig, lambda x: _sig(x) * (1 - _sig(x)), ()),
    "hard_tanh": (lambda x: np.clip(x, -1, 1), lambda x: (np.abs(x) < 1) * 1.0, (-1.0, 1.0)),
    "elu": (
        lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
        lambda x: np.where(x > 0, 1.0, np.exp(np.minimum(x, 0))),
        (0.0,),
    ),
    "selu": (
        lambda x: SELU_L * np.where(x > 0, x, SELU_A * np.expm1(np.minimum(x, 0))),
        lambda x: SELU_L * np.where(x > 0, 1.0, SELU_A * np.exp(np.minimum(x, 0))),
        (0.0,),
    ),
    "gelu": (
        lambda x: x * special.ndtr(x),
        lambda x: special.ndtr(x) + x * np.exp(-x * x / 2) / math.sqrt(2 * math.pi),
        (),
    ),
    "silu": (lambda x: x * _sig(x), lambda x: _sig(x) * (1 + x * (1 - _sig(x))), ()),
    "softplus": (lambda x: np.logaddexp(0, x), _sig, ()),
    "sin": (np.sin, np.cos, ()),
}


def gauss1(f, q, kinks=()):
    """E[f(sqrt(q) z)] by adaptive quadrature, split at the kinks."""
    s = math.sqrt(q)
    pts = sorted({0.0, *[k / s for k in kinks if abs(k / s) < 30]})
    edges = [-30.0, *pts, 30.0]
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:], strict=False):
        total += integrate.quad(lambda z: f(s * z) * math.exp(-z * z / 2), a, b, epsabs=1e-15, epsrel=1e-13, limit=400)[
            0
        ]
    return total / math.sqrt(2 * math.pi)


_GH = {}


def _hermgauss(n):
    if n not in _GH:
        x, w = np.polynomial.hermite_e.hermegauss(n)
        _GH[n] = (x, w / math.sqrt(2 * math.pi))
    return _GH[n]


def gauss2(f, g, q, c, kinks=(), n=240):
    """E[f(u1) g(u2)], u1 = sqrt(q) z1, u2 = sqrt(q)(c z1 + sqrt(1-c^2) z2).

    Smooth activations: tensor Gauss-Hermite of degree n. Kinked: nested adaptive quadrature.
    """
    s, r = math.sqrt(q), math.sqrt(max(1 - c * c, 0.0))
    if not kinks:
        x, w = _hermgauss(n)
        z1, z2 = np.meshgrid(x, x, indexing="ij")
        return float(np.einsum("i,j,ij->", w, w, f(s * z1) * g(s * (c * z1 + r * z2))))

    def inner(z1):
        return gauss_shifted(g, s * c * z1, s * r, kinks)

    return gauss1(lambda u: f(u) * inner(u / s), q, kinks)


def gauss_shifted(g, mean, std, kinks):
    """E[g(mean + std z)] by adaptive quadrature split at the kinks."""
    if std == 0:
        return float(g(np.array(mean)))
    pts = sorted({(k - mean) / std for k in kinks if abs((k - mean) / std) < 30})
    edges = [-30.0, *pts, 30.0]
    total = 0.0
    for a, b in zip(edges[:-1], edges[1:], strict=False):
        total += integrate.quad(
            lambda z: g(mean + std * z) * math.exp(-z * z / 2), a, b, epsabs=1e-14, epsrel=1e-12, limit=200
        )[0]
    return total / math.sqrt(2 * math.pi)


class Reference:
    """Mean-field quantities of one setting, computed independently of deepprop."""

    def __init__(self, name, sw2, sb2, mu2=1.0, add_var=0.0):
        self.f, self.d, self.kinks = ACTS[name]
        self.sw2, self.sb2, self.mu2, self.add_var = sw2, sb2, mu2, add_var

    def V(self, q):
        return gauss1(lambda x: self.f(x) ** 2, q, self.kinks)

    def Q(self, q):
        return self.sw2 * (self.mu2 * self.V(q) + self.add_var) + self.sb2

    def q_star(self, hi=50.0):
        return optimize.brentq(lambda q: self.Q(q) - q, 1e-12, hi, xtol=1e-15, rtol=1e-15)

    def chi1(self, q):
        return self.sw2 * self.mu2 * gauss1(lambda x: self.d(x) ** 2, q, self.kinks)

    def q_slope(self, q, h=1e-5):
        return (self.Q(q + h) - self.Q(q - h)) / (2 * h)

    def K(self, q, c):
        return gauss2(self.f, self.f, q, c, self.kinks)

    def c_map(self, q, c):
        return (self.sw2 * self.K(q, c) + self.sb2) / q

    def chi_c(self, q, c):
        return self.sw2 * gauss2(self.d, self.d, q, c, self.kinks)

    def c_star(self, q):
        chi = self.chi1(q)
        if self.mu2 == 1.0 and self.add_var == 0.0 and chi <= 1.0:
            return 1.0
        return optimize.brentq(lambda c: self.c_map(q, c) - c, 0.0, 1.0 - 1e-3, xtol=1e-14, rtol=1e-14)


def relu_noise_closed_form(mu2):
    """Follow-ups section 1: ReLU at sigma_w^2 = 2/mu2, sigma_b^2 = 0 -> (c*, chi_c, xi_c)."""

    def cmap(c):
        return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (math.pi * mu2)

    c = optimize.brentq(lambda c: cmap(c) - c, 0.0, 1.0, xtol=1e-15, rtol=1e-15)
    chi_c = (math.asin(c) / math.pi + 0.5) / mu2
    return c, chi_c, -1.0 / math.log(chi_c)


def sampled_layer(f, q, c, sw2, sb2, noisy, n=1_000_000, seed=0):
    """One wide layer by sampling: (q', se, q_ab', se) for a pair of pre-activations of variance q and
    correlation c; ``noisy(rng, y1, y2)`` returns the two inputs' phi values with noise drawn independently per
    input. q' = sw2 E[y1^2] + sb2, q_ab' = sw2 E[y1 y2] + sb2, standard errors of the sample means."""
    rng = np.random.default_rng(seed)
    z1, z2 = rng.standard_normal(n), rng.standard_normal(n)
    u1 = math.sqrt(q) * z1
    u2 = math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)
    y1, y2 = noisy(rng, f(u1), f(u2))
    return (sw2 * np.mean(y1 * y1) + sb2, sw2 * np.std(y1 * y1) / math.sqrt(n),
            sw2 * np.mean(y1 * y2) + sb2, sw2 * np.std(y1 * y2) / math.sqrt(n))
