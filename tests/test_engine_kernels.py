"""Gaussian integrals of every activation against independent computations."""

import math

import numpy as np
import pytest
import torch
from reference import ACTS, gauss1, gauss2, sampled_layer

from deepprop import ACTIVATIONS, get_activation
from deepprop.theory.kernels import ClosedFormKernel, kernel_for
from deepprop.theory.maps import TensorPrior, c_map, q_map

ALL = list(ACTS)
CLOSED = [name for name, act in ACTIVATIONS.items() if act.closed_form is not None]
T = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


def test_reference_and_monte_carlo_tests_cover_every_registered_activation():
    """The quadrature, Monte Carlo and fixed-point tests run over the reference table (tests/reference.py);
    it must hold every activation deepprop registers, so a new one cannot go untested."""
    assert set(ACTS) == set(ACTIVATIONS), (set(ACTIVATIONS) - set(ACTS), set(ACTS) - set(ACTIVATIONS))
    assert set(CLOSED) == {"relu", "erf", "linear"}  # the closed forms tested below against quadrature
    for name, act in ACTIVATIONS.items():  # each activation's kernel is its own (no table keyed by name)
        assert isinstance(kernel_for(act), ClosedFormKernel) == (act.closed_form is not None), name


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("q", [0.05, 1.0, 3.7, 40.0])
def test_one_dimensional_moments_match_adaptive_quadrature(name, q):
    f, d, kinks = ACTS[name]
    k = kernel_for(get_activation(name), closed_form=False)
    qt = T([q])
    assert k.second_moment(qt).item() == pytest.approx(gauss1(lambda x: f(x) ** 2, q, kinks), rel=1e-10, abs=1e-14)
    assert k.derivative_moment(qt).item() == pytest.approx(gauss1(lambda x: d(x) ** 2, q, kinks), rel=1e-10)


@pytest.mark.parametrize("name", ALL)
def test_variance_slope_matches_finite_difference(name):
    f, _, kinks = ACTS[name]
    k = kernel_for(get_activation(name), closed_form=False)
    for q in (0.3, 2.0):
        h = 1e-5 * q
        fd = (gauss1(lambda x: f(x) ** 2, q + h, kinks) - gauss1(lambda x: f(x) ** 2, q - h, kinks)) / (2 * h)
        assert k.second_moment_slope(T([q])).item() == pytest.approx(fd, rel=1e-7)
        v, dv = k.second_moment_and_slope(T([q]))
        assert dv.item() == pytest.approx(fd, rel=1e-7)


SMOOTH = [n for n in ALL if not ACTS[n][2]]
KINKED = [n for n in ALL if ACTS[n][2]]


@pytest.mark.parametrize("name", SMOOTH)
@pytest.mark.parametrize("use_series", [True, False])
def test_pair_kernel_smooth_matches_high_degree_hermite(name, use_series):
    f, d, _ = ACTS[name]
    k = kernel_for(get_activation(name), closed_form=False)
    q = T([0.4, 1.0, 2.5, 2.5, 2.5])
    c = T([0.3, -0.5, 0.1, 0.8, 0.99])
    pair = k.pair(q, use_series=use_series)
    ref_v = [gauss2(f, f, qi, ci) for qi, ci in zip(q.tolist(), c.tolist(), strict=False)]
    ref_s = [qi * gauss2(d, d, qi, ci) for qi, ci in zip(q.tolist(), c.tolist(), strict=False)]
    np.testing.assert_allclose(pair.value(c).numpy(), ref_v, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(pair.slope(c).numpy(), ref_s, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("name", KINKED)
def test_pair_kernel_kinked_matches_nested_adaptive_quadrature(name):
    f, d, kinks = ACTS[name]
    k = kernel_for(get_activation(name), closed_form=False)
    q, c = T([0.7, 2.0]), T([0.35, 0.9])
    pair = k.pair(q)
    for i in range(2):
        ref = gauss2(f, f, q[i].item(), c[i].item(), kinks)
        assert pair.value(c)[i].item() == pytest.approx(ref, rel=1e-8)
        ref_s = q[i].item() * gauss2(d, d, q[i].item(), c[i].item(), kinks)
        assert pair.slope(c)[i].item() == pytest.approx(ref_s, rel=1e-7)


@pytest.mark.parametrize("name", CLOSED)
def test_closed_forms_agree_with_quadrature(name):
    act = get_activation(name)
    closed, quad = kernel_for(act), kernel_for(act, closed_form=False)
    assert type(closed) is not type(quad)
    q = T([0.2, 1.0, 3.7])
    for method in ("second_moment", "second_moment_slope", "derivative_moment"):
        np.testing.assert_allclose(getattr(closed, method)(q), getattr(quad, method)(q), rtol=1e-10)
    qq = T([0.2, 1.0, 3.7, 1.3])
    c = T([-0.6, 0.2, 0.9, 0.999])
    np.testing.assert_allclose(
        closed.pair(qq).value(c), quad.pair(qq, use_series=False).value(c), rtol=1e-8, atol=1e-13
    )
    np.testing.assert_allclose(closed.pair(qq).slope(c), quad.pair(qq, use_series=False).slope(c), rtol=1e-8)


def test_relu_arccos_kernel_known_values():
    # c = 0: E[relu(u1) relu(u2)] = q / (2 pi); c = 1: q / 2.
    pair = kernel_for(get_activation("relu")).pair(T([2.0, 2.0]))
    np.testing.assert_allclose(pair.value(T([0.0, 1.0])), [1 / math.pi, 1.0], rtol=1e-14)


@pytest.mark.parametrize("name", ALL)
def test_maps_against_monte_carlo_with_explicit_noise(name):
    """One wide layer by sampling: noise drawn explicitly, expectations by 1e6 samples."""
    q, c, sw2, sb2, rho, s_add = 0.9, 0.55, 1.7, 0.1, 0.8, 0.3

    def noisy(rng, f1, f2):
        n = f1.size
        keep1, keep2 = (rng.random(n) < rho) / rho, (rng.random(n) < rho) / rho
        return f1 * keep1 + s_add * rng.standard_normal(n), f2 * keep2 + s_add * rng.standard_normal(n)

    mc_q, se_q, mc_qab, se_qab = sampled_layer(ACTS[name][0], q, c, sw2, sb2, noisy)

    s = TensorPrior.build(name, sw2, sb2, keep_rate=rho, noise_add=s_add)
    qt = T(q)
    q_next = q_map(s, qt).item()
    c_next = c_map(s, qt, T(c)).item()
    assert abs(q_next - mc_q) < 5 * se_q
    assert abs(c_next * q_next - mc_qab) < 5 * se_qab


@pytest.mark.parametrize("name", ["tanh", "erf", "hard_tanh", "selu", "sin", "relu"])
def test_correlation_map_slope_matches_finite_difference(name):
    from deepprop.theory.maps import CorrelationMap, chi1

    s = TensorPrior.build(name, 1.9, 0.07, keep_rate=0.9)
    q = T(0.8)
    cmap = CorrelationMap(s, q)
    for c in (0.2, 0.6, 0.95):
        h = 1e-5
        fd = (cmap(T(c + h)) - cmap(T(c - h))).item() / (2 * h)
        assert cmap.slope(T(c)).item() == pytest.approx(fd, rel=1e-6)
    # Without noise, at the fixed point q* the slope at c = 1 is chi1 (eq. 5 is the slope of eq. 4 at c = 1).
    # Only for smooth phi: with a kink the map has a (1 - c)^(3/2) term and one-sided differences converge
    # like sqrt(h).
    if ACTS[name][2]:
        return
    from deepprop.theory.fixed_points import q_star

    s = TensorPrior.build(name, 1.9, 0.07)
    qs, _ = q_star(s)
    one_sided = (CorrelationMap(s, qs)(T(1.0)) - CorrelationMap(s, qs)(T(1.0 - 1e-6))).item() / 1e-6
    assert one_sided == pytest.approx(chi1(s, qs).item(), rel=1e-4)
