"""The engine's fast paths (tabulated warm starts, split Hermite series, cut orders, shared trajectories)
against independent computations. No timing here: speed lives in benchmarks/bench_engine.py."""

import math

import numpy as np
import pytest
import torch
from reference import ACTS, Reference, gauss1, gauss2

from deepprop import get_activation
from deepprop.theory import fixed_points
from deepprop.theory.gauss import HermiteSeries
from deepprop.theory.kernels import kernel_for
from deepprop.theory.maps import TensorPrior
from deepprop.theory.meanfield import mean_field, trajectory

T = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


@pytest.mark.parametrize("name", ["tanh", "gelu"])
def test_split_hermite_coefficients_match_gauss_hermite(name):
    # a_k = E[phi(sqrt(q) z) He_k(z)] / sqrt(k!) from a 200-node Gauss-Hermite rule (numpy), for an odd
    # activation (even orders exactly 0, skipped) and one without parity. The Gauss-Hermite reference
    # itself is good to ~2e-11 in a_k here (tanh's poles at +-i pi / (2 sqrt(q)) slow it down): absolute margin.
    q = 0.6
    z, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / math.sqrt(2 * math.pi)
    phi = ACTS[name][0](math.sqrt(q) * z)
    series = HermiteSeries(get_activation(name), T([q]), order=40)
    for k in range(41):
        basis = np.zeros(k + 1)
        basis[k] = 1.0
        a_k = (w * phi * np.polynomial.hermite_e.hermeval(z, basis)).sum() / math.sqrt(math.factorial(k))
        assert float(series.sq_coef[0, k]) == pytest.approx(a_k**2, rel=1e-9, abs=5e-11 * abs(a_k) + 1e-20)
    assert float(series.second_moment[0]) == pytest.approx(gauss1(lambda x: ACTS[name][0](x) ** 2, q), rel=1e-12)
    assert series.odd == (name == "tanh")


@pytest.mark.parametrize("name", ["tanh", "gelu"])
def test_orders_cut_by_c_max_keep_the_map(name):
    # c_max small: orders above 63 are skipped, and the map still matches the 2-D reference there.
    f = ACTS[name][0]
    q = T([0.7, 2.0, 3.5])
    c = T([0.4, -0.55, 0.5])
    series = HermiteSeries(get_activation(name), q, c_max=c.abs())
    assert series.order == 63  # every point's tail * 0.55^64 is below round-off
    ref = [gauss2(f, f, qi, ci) for qi, ci in zip(q.tolist(), c.tolist(), strict=True)]
    np.testing.assert_allclose(series.value(c).numpy(), ref, rtol=1e-10, atol=1e-13)
    near_one = HermiteSeries(get_activation(name), q, c_max=T([0.4, 0.999, 0.5]))
    assert near_one.order == 200  # one point near c = 1 needs the full series
    c2 = T([0.4, 0.999, 0.5])
    ref2 = [gauss2(f, f, qi, ci) for qi, ci in zip(q.tolist(), c2.tolist(), strict=True)]
    np.testing.assert_allclose(near_one.value(c2).numpy(), ref2, rtol=1e-9)


def test_variance_table_interpolates_the_quadrature():
    # The fine table's cubic Hermite surrogate of V against direct quadrature on the same rule, and the
    # reference's adaptive quadrature: errors ~1e-15, so a tabulated start is already converged.
    kernel = kernel_for(get_activation("tanh"))
    table = fixed_points._VarianceTable(kernel, torch.float64, torch.device("cpu"), fixed_points.FINE_PER_DECADE)
    q = torch.exp(torch.linspace(-6.0, 1.5, 301, dtype=torch.float64))
    table.ensure(q)
    v, dv, inside = table(q)
    assert bool(inside.all())
    direct, slope, _ = kernel.moments(q)
    np.testing.assert_allclose(v.numpy(), direct.numpy(), rtol=2e-14)
    np.testing.assert_allclose(dv.numpy(), slope.numpy(), rtol=1e-9)
    for qi in (0.01, 0.7, 3.9):
        vi, _, _ = table(T([qi]))
        assert float(vi) == pytest.approx(gauss1(lambda x: np.tanh(x) ** 2, qi), rel=1e-12)


def test_warm_started_grid_matches_reference():
    # A grid large enough for the tabulated warm start (>= 64 points), with the q* = 0 edge (no bias,
    # sw2 <= 1), noise, and the ordered and chaotic phases; checked point by point against brentq.
    sw2 = np.array([0.8, 1.0, 1.6, 2.4, 3.7, 4.0, 5.5, 7.0])
    sb2 = np.array([0.0, 1e-4, 0.02, 0.1, 0.3, 0.9, 2.0, 3.0])
    mf = mean_field("tanh", sw2[:, None], sb2[None, :], keep_rate=np.array([1.0, 0.85])[:, None, None])
    rng = np.random.default_rng(3)
    for k, i, j in zip(rng.integers(0, 2, 10), rng.integers(0, 8, 10), rng.integers(1, 8, 10), strict=True):
        ref = Reference("tanh", sw2[i], sb2[j], mu2=1 / [1.0, 0.85][k])
        q = ref.q_star()
        assert mf.q_star[k, i, j] == pytest.approx(q, rel=1e-9)
        assert mf.chi1[k, i, j] == pytest.approx(ref.chi1(q), rel=1e-9)
        assert mf.xi_q[k, i, j] == pytest.approx(-1 / math.log(abs(ref.q_slope(q))), rel=1e-5)
    assert np.all(mf.q_star[0, :2, 0] == 0.0)  # no bias, sw2 <= 1: the signal dies out


@pytest.mark.parametrize("c0", [-0.9, 0.0, 0.35, 0.995])
def test_shared_prior_trajectory_matches_reference(c0):
    # Many pairs of one prior share q^l and the kernel: each pair must still follow eq. 3 and 4.
    c0s = np.array([c0, 0.5, -0.2, c0])
    q, c = trajectory("tanh", 2.2, 0.05, q0=0.9, c0=c0s, depth=5, keep_rate=0.9)
    ref = Reference("tanh", 2.2, 0.05, mu2=1 / 0.9)
    qr, cr = [0.9], [c0]
    for _ in range(5):
        q_next = ref.Q(qr[-1])
        cr.append((ref.sw2 * ref.K(qr[-1], cr[-1]) + ref.sb2) / q_next)
        qr.append(q_next)
    np.testing.assert_allclose(q[0], qr, rtol=1e-11)
    np.testing.assert_allclose(q[3], qr, rtol=1e-11)
    np.testing.assert_allclose(c[0], cr, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(c[3], c[0], rtol=0, atol=0)


def test_mixed_grid_trajectory_matches_reference():
    # Distinct priors and q0 in one call, two rows the same (they share one series). The reference's
    # Gauss-Hermite 2-D rule limits the check to q <~ 3 for tanh.
    sw2 = np.array([[1.5], [3.0], [1.5], [2.8]])
    q, c = trajectory("tanh", sw2, 0.1, q0=np.array([[0.5], [2.0], [0.5], [3.0]]), c0=np.array([0.3, 0.8]), depth=3)
    for i in range(4):
        for j, c0 in enumerate((0.3, 0.8)):
            ref = Reference("tanh", float(sw2[i, 0]), 0.1)
            qq, cc = [float(q[i, j, 0])], [c0]
            for _ in range(3):
                q_next = ref.Q(qq[-1])
                cc.append((ref.sw2 * ref.K(qq[-1], cc[-1]) + ref.sb2) / q_next)
                qq.append(q_next)
            np.testing.assert_allclose(q[i, j], qq, rtol=1e-10)
            np.testing.assert_allclose(c[i, j], cc, rtol=1e-8)


def test_tensor_prior_fields_unchanged():
    s = TensorPrior.build("tanh", [1.0, 2.0], 0.1, keep_rate=0.9)
    assert s.shape == (2,) and float(s.mu2[0]) == pytest.approx(1 / 0.9)
