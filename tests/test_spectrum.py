"""Jacobian spectrum theory (free probability) against closed forms and Monte Carlo spectra."""

import math

import numpy as np
import pytest
import torch

from deepprop.errors import ParameterError
from deepprop.simulate.jacobian import jacobian_spectrum
from deepprop.theory.spectrum import equal_gain_information, jacobian_moments


def test_linear_gaussian_closed_form_moments():
    # J = product of L Ginibre matrices: Fuss-Catalan law, m1 = sw2^L, m2/m1^2 = L + 1 -> spread = L.
    m = jacobian_moments("linear", 0.9, 0.0, 7, q=1.0)
    assert m.mean == pytest.approx(0.9**7, rel=1e-12)
    assert m.spread == pytest.approx(7.0, abs=1e-9)
    assert jacobian_moments("linear", 1.3, 0.0, 7, weights="orthogonal", q=1.0).spread == pytest.approx(0.0, abs=1e-9)


def test_relu_closed_form_moments():
    # relu: phi'^2 is Bernoulli(1/2): E[a^2]/E[a]^2 - 1 = 1, so spread = 2L (Gaussian), L (orthogonal);
    # with dropout rho the layer factor is Bernoulli(rho/2)/rho^2 -> E[a^2]/E[a]^2 = 2/rho.
    assert jacobian_moments("relu", 2.0, 0.0, 5, q=1.0).spread == pytest.approx(10.0, rel=1e-9)
    assert jacobian_moments("relu", 2.0, 0.0, 5, q=1.0, weights="orthogonal").spread == pytest.approx(5.0, rel=1e-9)
    m = jacobian_moments("relu", 1.6, 0.0, 5, q=1.0, keep_rate=0.8, weights="orthogonal")
    assert m.spread == pytest.approx(5 * (2 / 0.8 - 1), rel=1e-9)
    assert m.chi1 == pytest.approx(1.6 / 0.8 / 2, rel=1e-12)


def test_equal_gain_information_closed_forms():
    # isometry (orthogonal linear): every normalised l = 1 -> I/N = log(1 + snr) / 2 exactly
    iso = equal_gain_information("linear", 1.0, 0.0, 9, weights="orthogonal", q=1.0, snr=2.0, grid=300)
    assert iso == pytest.approx(0.5 * math.log(3.0), rel=1e-5)  # pchip + trapezoid: error 3e-6 at grid 300-1500
    # one Gaussian layer: Marchenko-Pastur (ratio 1), Shannon transform in closed form (Tulino-Verdu):
    # V(s) = E[log(1 + s l)] = 2 log((1 + sqrt(1 + 4 s)) / 2) - (sqrt(1 + 4 s) - 1)^2 / (4 s)
    s = 1.7
    r = math.sqrt(1 + 4 * s)
    exact = 2 * math.log((1 + r) / 2) - (r - 1) ** 2 / (4 * s)
    # measured error 8e-6 at grid 300 (4e-5 at 200, 2e-6 at 1500)
    assert equal_gain_information("linear", 1.0, 0.0, 1, q=1.0, snr=s, grid=300) == pytest.approx(0.5 * exact, rel=2e-5)
    # relu orthogonal, one layer: l in {0, 2} with prob 1/2 each -> I/N = log(1 + 2 snr) / 4
    assert equal_gain_information("relu", 2.0, 0.0, 1, weights="orthogonal", q=1.0, snr=s, grid=300) == pytest.approx(
        0.25 * math.log1p(2 * s), rel=1e-5)  # measured 1e-6


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_tanh_spectrum_matches_simulation_fast(weights):
    # width 300, depth 8, 3 networks: the per-network spread scatters by ~5 % and finite-N corrections
    # are O(L/N) ~ 3 %; 12 % covers both. The equal-gain information self-averages (error ~0.5 %): 3 %.
    torch.set_num_threads(1)
    L = 8
    th = jacobian_moments("tanh", 1.5, 0.05, L, weights=weights)
    ith = equal_gain_information("tanh", 1.5, 0.05, L, weights=weights)
    p = jacobian_spectrum("tanh", 1.5, 0.05, width=300, depth=L, weights=weights, networks=3, seed=5).points[0]
    assert p.spread == pytest.approx(th.spread, rel=0.12)
    assert p.mi_equal_gain == pytest.approx(ith, rel=0.03)
    d = p.to_dict()
    assert d["theory_spread"] == pytest.approx(th.spread) and d["mi_equal_gain_theory"] == pytest.approx(ith)


@pytest.mark.slow
@pytest.mark.parametrize("act,sw2,sb2,q", [("tanh", 1.76, 0.05, None), ("relu", 2.0, 0.0, 1.0)])
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_spectrum_moments_width_500_depth_32(act, sw2, sb2, q, weights):
    # width 500, depth 32 (L/N = 0.06), 16 networks (4 were too few for Gaussian weights: the per-network
    # var/mean^2 is heavy-tailed and 4 networks scattered by up to +-20 %). Measured at seeds 3 and 4 over the
    # four cases: spread within 5.8 %, equal-gain I/N within 1.3 %, mean ||J||^2/N within 11.5 % (the
    # per-network gain has a coefficient of variation 0.14-0.33, so the 16-network mean has ~8 % error).
    # Tolerances 10 %, 3 %, 25 % (~3 sigma for the mean).
    L = 32
    th = jacobian_moments(act, sw2, sb2, L, weights=weights, q=q)
    p = jacobian_spectrum(act, sw2, sb2, width=500, depth=L, weights=weights, networks=16, input_q=q,
                          seed=3).points[0]
    assert p.spread == pytest.approx(th.spread, rel=0.10)
    assert p.mi_equal_gain == pytest.approx(equal_gain_information(act, sw2, sb2, L, weights=weights, q=q, grid=400),
                                            rel=0.03)
    assert p.mean_sq_singular == pytest.approx(th.mean, rel=0.25)


def test_bad_spectrum_arguments():
    with pytest.raises(ParameterError) as e:
        jacobian_moments("tanh", 1.5, 0.05, 4, weights="unitary")
    assert e.value.param == "weights"
    with pytest.raises(ParameterError) as e:
        jacobian_moments("relu", 3.0, 0.1, 4)  # no finite q*: the caller must give q
    assert e.value.param == "q"
    assert np.isfinite(jacobian_moments("relu", 3.0, 0.1, 4, q=1.0).spread)


def test_information_map_closed_forms_and_simulation():
    # relu at sb2 = 0: q* is any value (sw2 = 2 is the only finite point) -> the map gives a reason elsewhere;
    # tanh: spread of the orthogonal map is the Gaussian one minus L (s_W = 1 vs 0) at every point, every
    # I/N stays below the isometry bound, orthogonal beats Gaussian (narrower spectrum, Jensen), and the
    # critical point is included with chi1 = 1.
    from deepprop.theory.spectrum import information_map

    L = 6
    imap = information_map("tanh", [0.8, 2.5], [0.05], L, grid=300)
    g = {p.sigma_w2: p for p in imap.points if p.weights == "gaussian"}
    o = {p.sigma_w2: p for p in imap.points if p.weights == "orthogonal"}
    crit = imap.critical(0.05, "gaussian")
    assert crit is not None and crit.chi1 == pytest.approx(1.0, abs=1e-6)
    for sw in g:
        assert g[sw].spread - o[sw].spread == pytest.approx(L, rel=1e-9)
        assert o[sw].mi_equal_gain > g[sw].mi_equal_gain
        assert o[sw].mi_equal_gain <= imap.mi_isometry + 1e-9
    assert imap.to_dict()["isometry"]["critical"] is True
    # Monte Carlo: width 300, depth 6, orthogonal at sw2 = 2.5 (2 networks): equal-gain I/N of the simulated
    # spectrum within 3 % (measured at depth 32: <= 3 %, benchmarks/fidelity_spectrum.py part 2)
    p = jacobian_spectrum("tanh", 2.5, 0.05, width=300, depth=L, weights="orthogonal", networks=2, seed=5).points[0]
    assert p.mi_equal_gain == pytest.approx(o[2.5].mi_equal_gain, rel=0.03)
    relu = information_map("relu", [3.0], [0.1], 4, weights=("orthogonal",), include_critical=False, grid=300)
    assert relu.points[0].reason is not None and math.isnan(relu.points[0].mi_equal_gain)
