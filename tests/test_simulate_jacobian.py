"""Jacobian spectrum: autograd check, chi1^L agreement, closed forms for linear networks, MI formula."""

import math

import numpy as np
import pytest
import torch

from deepprop.networks import Ensemble
from deepprop.simulate.jacobian import jacobian_spectrum, network_jacobian, replay
from deepprop.theory.meanfield import critical_sigma_w2, mean_field


def test_layerwise_jacobian_equals_autograd_jacobian_with_dropout():
    ens = Ensemble.build("tanh", 2.0, 0.1, 7, networks=2, keep_rate=0.7, noise_add=0.1)
    z0 = torch.randn(2, 7, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    jac, layers = network_jacobian(ens, z0, 4, ens.generator(2), keep_layers=True)
    for k in range(2):
        def f(v, k=k):
            return replay(ens, [type(la)(la.weight[k:k + 1], la.bias[k:k + 1],
                                         None if la.mult is None else la.mult[k:k + 1],
                                         None if la.add is None else la.add[k:k + 1]) for la in layers],
                          v.view(1, 7, 1)).view(7)
        auto = torch.autograd.functional.jacobian(f, z0[k].view(7))
        torch.testing.assert_close(jac[k], auto, rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_tanh_mean_squared_singular_value_within_5_percent_of_chi1_power_L():
    sweep = [1.2, 1.76, 3.0]
    # one network's ||J||_F^2 / N scatters by ~10 % at width 1000: average 24 networks (tangent probes)
    res = jacobian_spectrum("tanh", sweep, 0.05, width=1000, depth=10, networks=24, spectrum=False,
                            probes=8, seed=0, dtype="float32")
    chi1 = mean_field("tanh", np.array(sweep), 0.05).chi1
    for p, x in zip(res.points, chi1, strict=True):
        assert p.chi1 == pytest.approx(x)
        assert p.mean_sq_singular == pytest.approx(x**10, rel=0.05), (p.sigma_w2, p.mean_sq_singular, x**10)


def test_orthogonal_linear_network_has_flat_spectrum_and_closed_form_information():
    # J = sw2^{L/2} * orthogonal: every singular value is sw2^{L/2}; I = N/2 log(1 + s_x^2 sw2^L / s_n^2).
    n, depth, sw2 = 64, 6, 1.3
    res = jacobian_spectrum("linear", sw2, 0.0, width=n, depth=depth, weights="orthogonal", networks=2,
                            input_q=1.0, signal_var=0.5, noise_var=2.0)
    p = res.points[0]
    assert p.quantiles["q00"] == pytest.approx(sw2 ** (depth / 2), rel=1e-10)
    assert p.quantiles["q100"] == pytest.approx(sw2 ** (depth / 2), rel=1e-10)
    assert p.spread == pytest.approx(0.0, abs=1e-12)
    assert p.mutual_information == pytest.approx(0.5 * n * math.log1p(0.5 * sw2**depth / 2.0), rel=1e-10)


def test_probe_estimate_matches_full_jacobian_norm():
    kw = dict(width=120, depth=5, networks=6, seed=3, input_q=None)
    full = jacobian_spectrum("tanh", 2.0, 0.05, **kw).points[0].mean_sq_singular
    est = jacobian_spectrum("tanh", 2.0, 0.05, spectrum=False, probes=64, **kw).points[0].mean_sq_singular
    assert est == pytest.approx(full, rel=0.03)  # same networks (same seed), Hutchinson error ~ 1 %


def test_gaussian_linear_network_mean_squared_singular_value_is_sw2_power_L():
    res = jacobian_spectrum("linear", 0.9, 0.0, width=200, depth=8, networks=4, input_q=1.0, seed=1)
    assert res.points[0].mean_sq_singular == pytest.approx(0.9**8, rel=0.03)
    assert res.points[0].spread > 0.5  # products of Gaussian matrices: a wide spectrum


def test_orthogonal_weights_narrow_the_critical_spectrum():
    # follow-ups sec. 3: at chi1 = 1 the Gaussian spectrum spreads with depth, orthogonal stays narrower
    sb2 = 1e-3
    sw2 = float(np.ravel(critical_sigma_w2("tanh", sb2))[0])
    kw = dict(width=200, depth=16, networks=2, seed=0)
    gauss = jacobian_spectrum("tanh", sw2, sb2, weights="gaussian", **kw).points[0]
    orth = jacobian_spectrum("tanh", sw2, sb2, weights="orthogonal", **kw).points[0]
    assert orth.log_sv_std < 0.5 * gauss.log_sv_std
    assert orth.spread < 0.2 * gauss.spread


def test_a_peak_at_the_grids_edge_is_flagged():
    """The information's argmax at the smallest or largest sigma_w2 is the grid's edge, not a maximum."""
    from types import SimpleNamespace

    from deepprop.simulate.jacobian import JacobianResult

    def result(mi):
        pts = [SimpleNamespace(sigma_w2=s, mutual_information=m) for s, m in zip([1.2, 1.76, 3.0], mi, strict=True)]
        return JacobianResult(points=pts, critical_sigma_w2=1.76)

    assert result([1.0, 2.0, 1.5]).mi_peak_at_grid_edge is False
    assert result([1.0, 2.0, 2.5]).mi_peak_at_grid_edge is True
    assert result([3.0, 2.0, 2.5]).mi_peak_at_grid_edge is True
