"""critical_init against independent computations: ReLU closed forms (follow-ups section 1), Gauss-Hermite
mean-field maps for tanh, and brute-force maximisation of closed-form / quadrature xi_c."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from deepprop.advice import AdviceWarning, critical_init, homogeneous_second_moment
from deepprop.errors import ParameterError

# ---------------------------------------------------------------- independent closed forms / quadrature

def relu_f(c: float) -> float:
    """pi E[relu(z1) relu(c z1 + sqrt(1-c^2) z2)] * 2: sqrt(1-c^2) + (pi - arccos c) c."""
    return math.sqrt(max(1.0 - c * c, 0.0)) + (math.pi - math.acos(c)) * c


def relu_noisy_closed_form(mu2: float) -> tuple[float, float]:
    """c* and xi_c at sw2 = 2/mu2, sb2 = 0 (follow-ups section 1)."""
    c = brentq(lambda c: relu_f(c) / (math.pi * mu2) - c, 0.0, 1.0 - 1e-15, xtol=1e-15, rtol=1e-15)
    chi_c = (math.asin(c) / math.pi + 0.5) / mu2
    return c, -1.0 / math.log(chi_c)


_Z, _W = np.polynomial.hermite_e.hermegauss(160)
_W = _W / _W.sum()


def tanh_fixed_point(sw2: float, sb2: float, mu2: float = 1.0) -> float:
    q = 1.0
    for _ in range(5000):
        q_new = sw2 * mu2 * float(_W @ np.tanh(math.sqrt(q) * _Z) ** 2) + sb2
        if abs(q_new - q) < 1e-15:
            break
        q = q_new
    return q


def tanh_chi1(sw2: float, sb2: float) -> float:
    q = tanh_fixed_point(sw2, sb2)
    return sw2 * float(_W @ (1.0 / np.cosh(math.sqrt(q) * _Z) ** 4))


def tanh_xi_c_dropout(sw2: float, sb2: float, mu2: float) -> tuple[float, float]:
    """xi_c and q* for tanh with multiplicative noise mu2, by 2-D Gauss-Hermite quadrature."""
    q = tanh_fixed_point(sw2, sb2, mu2)
    z1, z2 = np.meshgrid(_Z, _Z, indexing="ij")
    w = np.outer(_W, _W)
    u1 = math.sqrt(q) * z1

    def u2(c):
        return math.sqrt(q) * (c * z1 + math.sqrt(1 - c * c) * z2)

    def cmap(c):
        return (sw2 * float(np.sum(w * np.tanh(u1) * np.tanh(u2(c)))) + sb2) / q

    c_star = brentq(lambda c: cmap(c) - c, -0.999, 0.999999, xtol=1e-14)
    chi_c = sw2 * float(np.sum(w / np.cosh(u1) ** 2 / np.cosh(u2(c_star)) ** 2))
    return -1.0 / math.log(chi_c), q


def relu_additive_xi_c(sw2: float, sb2: float, s2: float) -> tuple[float, float]:
    """xi_c and q* of a ReLU net with additive noise variance s2 (closed forms of follow-ups section 1)."""
    if sw2 >= 2:
        return math.nan, math.inf
    q = (sw2 * s2 + sb2) / (1 - sw2 / 2)
    c = brentq(lambda c: (sw2 * q * relu_f(c) / (2 * math.pi) + sb2) / q - c, 0.0, 1.0, xtol=1e-14)
    chi_c = sw2 * (math.pi - math.acos(c)) / (2 * math.pi)
    return -1.0 / math.log(chi_c), q


# ---------------------------------------------------------------- regime 1: ReLU family

@pytest.mark.parametrize("rho", [1.0, 0.95, 0.9, 0.8, 0.7, 0.6, 0.5, 0.3, 0.123])
def test_relu_dropout_sigma_w2_is_exactly_two_rho(rho):
    r = critical_init("relu", keep_rate=rho)
    assert r.sigma_w2 == 2 * rho
    assert r.sigma_b2 == 0.0
    assert r.exact and r.regime == "relu-family"
    assert r.chi1 == pytest.approx(1.0, abs=1e-12)  # chi_1 = sw2 mu2 / 2


@pytest.mark.parametrize(
    "kw, mu2, published",
    [
        (dict(keep_rate=0.8), 1 / 0.8, (0.47280, 1.554)),
        (dict(keep_rate=0.6), 1 / 0.6, (0.28391, 0.966)),
        (dict(noise_mult=0.25), 1 + 0.25**2, (0.72038, 2.939)),
        (dict(keep_rate=0.9, noise_mult=0.5), 1.25 / 0.9, None),
    ],
)
def test_relu_noisy_c_star_and_xi_c_match_closed_form(kw, mu2, published):
    r = critical_init("relu", **kw)
    c_ref, xi_ref = relu_noisy_closed_form(mu2)
    assert r.sigma_w2 == pytest.approx(2 / mu2, rel=1e-15)
    assert r.c_star == pytest.approx(c_ref, abs=1e-6)
    assert r.xi_c == pytest.approx(xi_ref, abs=1e-6)
    assert r.max_depth == pytest.approx(6 * xi_ref, abs=1e-5)
    if published is not None:
        assert round(c_ref, 5) == published[0] and round(xi_ref, 3) == published[1]
        assert r.c_star == pytest.approx(published[0], abs=5e-6)


def test_relu_without_noise_is_he_and_critical():
    r = critical_init("relu")
    assert (r.sigma_w2, r.sigma_b2, r.xi_c, r.max_depth) == (2.0, 0.0, math.inf, math.inf)


def test_leaky_relu_family_uses_its_second_moment():
    import torch

    from deepprop.integrations.model_structure import activation_from_module

    act = activation_from_module(torch.nn.LeakyReLU(0.2))
    assert homogeneous_second_moment(act) == pytest.approx((1 + 0.04) / 2, rel=1e-15)
    r = critical_init(act, keep_rate=0.75)
    assert r.sigma_w2 == pytest.approx(2 * 0.75 / 1.04, rel=1e-14)
    assert r.chi1 == pytest.approx(1.0, abs=1e-9)


def test_depth_verdict():
    deep = critical_init("relu", keep_rate=0.8, depth=20)
    assert "depth 20 > 6*xi_c = 9: expect it not to train" in deep.explanation
    shallow = critical_init("relu", keep_rate=0.8, depth=5)
    assert "depth 5 <= 6*xi_c = 9: expect it to train" in shallow.explanation


# ---------------------------------------------------------------- regime 3: smooth activations

def test_tanh_critical_point_at_sb2_005():
    r = critical_init("tanh")
    assert r.sigma_b2 == 0.05
    assert round(r.sigma_w2, 4) == 1.7610
    # independent: chi_1(sw2) = 1 with q* from a Gauss-Hermite fixed-point iteration
    sw2_ref = brentq(lambda w: tanh_chi1(w, 0.05) - 1.0, 1.2, 2.5, xtol=1e-13)
    assert r.sigma_w2 == pytest.approx(sw2_ref, abs=1e-7)
    assert r.exact and r.regime == "critical-line"
    assert r.xi_c == math.inf and r.max_depth == math.inf
    assert r.q_star == pytest.approx(tanh_fixed_point(sw2_ref, 0.05), rel=1e-7)


@pytest.mark.parametrize("sb2", [0.01, 0.2])
def test_tanh_critical_point_other_sb2(sb2):
    r = critical_init("tanh", sigma_b2=sb2)
    sw2_ref = brentq(lambda w: tanh_chi1(w, sb2) - 1.0, 1.0, 3.0, xtol=1e-13)
    assert r.sigma_w2 == pytest.approx(sw2_ref, abs=1e-7)


def test_tanh_dropout_maximises_xi_c_at_given_sb2():
    """No critical point with dropout: the returned sw2 maximises xi_c (checked by brute force on an
    independent quadrature)."""
    rho, sb2 = 0.9, 0.05
    with pytest.warns(AdviceWarning, match="not an exact critical initialisation"):
        r = critical_init("tanh", keep_rate=rho, sigma_b2=sb2)
    assert not r.exact and r.regime == "max-xi_c"
    assert "no critical point" in r.explanation
    xi_at, _ = tanh_xi_c_dropout(r.sigma_w2, sb2, 1 / rho)
    assert r.xi_c == pytest.approx(xi_at, rel=1e-5)
    grid = np.linspace(1.0, 3.0, 81)
    brute = max(tanh_xi_c_dropout(w, sb2, 1 / rho)[0] for w in grid)
    assert r.xi_c >= brute - 1e-6
    # and it is a genuine interior maximum: nearby points are worse
    assert xi_at > tanh_xi_c_dropout(r.sigma_w2 * 0.97, sb2, 1 / rho)[0]
    assert xi_at > tanh_xi_c_dropout(r.sigma_w2 * 1.03, sb2, 1 / rho)[0]


# ---------------------------------------------------------------- regime 2: additive noise

def test_relu_additive_noise_has_no_critical_point_and_returns_best_bounded_choice():
    s = 0.3
    with pytest.warns(AdviceWarning, match="sits on a bound of the search"):
        r = critical_init("relu", noise_add=s)
    assert not r.exact and r.regime == "additive-noise"
    assert "no critical initialisation exists" in r.explanation
    xi_ref, q_ref = relu_additive_xi_c(r.sigma_w2, r.sigma_b2, s * s)
    assert r.xi_c == pytest.approx(xi_ref, rel=1e-6)
    assert r.q_star == pytest.approx(q_ref, rel=1e-6)
    assert 0.1 <= r.q_star <= 10.0 * (1 + 1e-9)
    # brute force over the closed form on the accepted region (0.1 <= q* <= 10)
    best = 0.0
    for w in np.linspace(0.05, 1.999, 120):
        for b in np.concatenate([[0.0], np.geomspace(1e-4, 2.0, 40)]):
            xi, q = relu_additive_xi_c(w, b, s * s)
            if 0.1 <= q <= 10.0:
                best = max(best, xi)
    assert r.xi_c >= best * (1 - 1e-4)
    # xi_c grows with q*, so the answer sits on the cap and says so
    assert r.on_boundary and "q* <= 10" in r.explanation


# ---------------------------------------------------------------- bad input

@pytest.mark.parametrize(
    "kw, param",
    [(dict(keep_rate=0.0), "keep_rate"), (dict(keep_rate=1.5), "keep_rate"),
     (dict(noise_mult=-1.0), "noise_mult"), (dict(sigma_b2=-0.1), "sigma_b2"), (dict(depth=0), "depth"),
     (dict(depth=2.5), "depth")],
)
def test_bad_input_names_the_parameter(kw, param):
    with pytest.raises(ParameterError) as exc:
        critical_init("relu", **kw)
    assert exc.value.param == param


def test_unknown_activation():
    with pytest.raises(ParameterError, match="activation"):
        critical_init("nope")


def test_noisy_relu_simulation_matches_theory_at_critical_init():
    """Finite networks (the figure's simulator) vs the closed-form c* at sw2 = 2 rho: q stays ~1 and c^l
    reaches c* from both sides within the spread over networks."""
    from deepprop.simulate import simulate_forward

    rho = 0.8
    c_ref, _ = relu_noisy_closed_form(1 / rho)
    for c0 in (0.95, 0.05):
        r = simulate_forward("relu", 2 * rho, 0.0, keep_rate=rho, q0=1.0, c0=c0, depth=8, width=400,
                             networks=6, pairs=1, seed=0)
        # q_err, c_err are standard errors (ddof = 1): 2.7 and 3.6 of them are within 3 and 4 population
        # standard deviations / sqrt(6).
        assert abs(r.q[-1] - 1.0) < 2.7 * r.q_err[-1] + 0.05
        assert abs(r.c[-1] - c_ref) < 3.6 * r.c_err[-1] + 0.01
