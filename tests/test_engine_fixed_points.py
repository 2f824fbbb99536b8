"""Fixed points, slopes, depth scales and the critical line against independent computations."""

import math

import numpy as np
import pytest
from reference import Reference, relu_noise_closed_form

from deepprop.theory.meanfield import critical_sigma_w2, mean_field, measured_depth_scales, trajectory

CASES = [
    # name, sw2, sb2, keep_rate, noise_add
    ("tanh", 1.3, 0.05, 1.0, 0.0),  # ordered
    ("tanh", 2.5, 0.05, 1.0, 0.0),  # chaotic
    ("tanh", 4.0, 0.3, 1.0, 0.0),
    ("tanh", 1.8, 0.05, 0.9, 0.0),  # dropout
    ("tanh", 2.0, 0.1, 1.0, 0.2),  # additive noise
    ("erf", 3.0, 0.05, 1.0, 0.0),
    ("sigmoid", 5.0, 0.1, 1.0, 0.0),
    ("sin", 2.0, 0.05, 1.0, 0.0),
    ("hard_tanh", 2.5, 0.05, 1.0, 0.0),  # kinked, chaotic
    ("hard_tanh", 1.2, 0.05, 0.95, 0.0),
    ("relu", 1.5, 0.1, 1.0, 0.0),
    ("elu", 1.5, 0.1, 1.0, 0.0),
    ("gelu", 1.9, 0.05, 1.0, 0.0),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}-{c[3]}-{c[4]}")
def test_point_matches_reference(case):
    name, sw2, sb2, rho, s_add = case
    mf = mean_field(name, sw2, sb2, keep_rate=rho, noise_add=s_add).to_dict()
    ref = Reference(name, sw2, sb2, mu2=1 / rho, add_var=s_add**2)
    q = ref.q_star()
    chi1 = ref.chi1(q)
    c = ref.c_star(q)
    chi_c = chi1 if c == 1.0 else ref.chi_c(q, c)
    assert mf["q_star"] == pytest.approx(q, rel=1e-6)
    assert mf["chi1"] == pytest.approx(chi1, rel=1e-6)
    assert mf["c_star"] == pytest.approx(c, rel=1e-5)
    assert mf["xi_c"] == pytest.approx(-1 / math.log(chi_c), rel=1e-5)
    assert mf["xi_q"] == pytest.approx(-1 / math.log(abs(ref.q_slope(q))), rel=1e-5)
    assert mf["xi_grad"] == pytest.approx(-1 / math.log(chi1), rel=1e-5)
    assert mf["max_depth"] == pytest.approx(6 * mf["xi_c"], rel=1e-12)
    assert mf["phase"] == ("ordered" if chi1 < 1 else "chaotic")


def test_stable_fixed_point_is_the_limit_of_the_iteration():
    # In the chaotic phase c = 1 is a fixed point too; c* must be the attracting one.
    mf = mean_field("tanh", 3.0, 0.05)
    q, c = trajectory("tanh", 3.0, 0.05, q0=0.8, c0=0.99, depth=400)
    assert mf.c_star < 0.9
    assert c[-1] == pytest.approx(float(mf.c_star), abs=1e-9)
    assert q[-1] == pytest.approx(float(mf.q_star), rel=1e-9)


def test_trajectory_matches_reference_recursion():
    ref = Reference("tanh", 2.0, 0.05, mu2=1 / 0.9)
    q, c = trajectory("tanh", 2.0, 0.05, q0=0.8, c0=0.6, depth=4, keep_rate=0.9)
    qr, cr = [0.8], [0.6]
    for _ in range(4):
        q_next = ref.Q(qr[-1])
        cr.append((ref.sw2 * ref.K(qr[-1], cr[-1]) + ref.sb2) / q_next)
        qr.append(q_next)
    np.testing.assert_allclose(q, qr, rtol=1e-10)
    np.testing.assert_allclose(c, cr, rtol=1e-9)


def test_known_tanh_critical_point():
    assert float(critical_sigma_w2("tanh", 0.05)) == pytest.approx(1.7610, abs=5e-5)


@pytest.mark.parametrize("name, sb2", [("tanh", 0.05), ("tanh", 0.2), ("erf", 0.1), ("sigmoid", 0.0)])
def test_critical_line_matches_reference(name, sb2):
    from scipy.optimize import brentq

    def excess(sw2):
        ref = Reference(name, sw2, sb2)
        return ref.chi1(ref.q_star(hi=500.0)) - 1.0

    expected = brentq(excess, 0.5, 300.0, xtol=1e-13)
    got = critical_sigma_w2(name, sb2)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert mean_field(name, got, sb2).chi1 == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("rho", [1.0, 0.9, 0.5])
def test_relu_critical_line_is_two_over_mu2(rho):
    got = critical_sigma_w2("relu", [0.0, 0.1], keep_rate=rho)
    np.testing.assert_allclose(got[0], 2 * rho, rtol=1e-9)
    # with a bias, q' = (sw2 mu2 / 2) q + sb2 grows without bound exactly where chi1 = sw2 mu2 / 2 reaches 1:
    # no critical point with a finite q* (follow-ups section 1, as for additive noise)
    assert np.isnan(got[1])
    assert np.isnan(critical_sigma_w2("relu", 0.0, keep_rate=rho, noise_add=1.0))


@pytest.mark.parametrize(
    "kwargs, published",
    [
        ({"keep_rate": 0.8}, (0.47280, 1.554)),
        ({"keep_rate": 0.6}, (0.28391, 0.966)),
        ({"noise_mult": 0.25}, (0.72038, 2.939)),
    ],
)
def test_relu_noise_closed_forms(kwargs, published):
    mu2 = (1 + kwargs.get("noise_mult", 0.0) ** 2) / kwargs.get("keep_rate", 1.0)
    mf = mean_field("relu", 2 / mu2, 0.0, **kwargs).to_dict()
    c_ref, chi_ref, xi_ref = relu_noise_closed_form(mu2)
    assert mf["c_star"] == pytest.approx(c_ref, rel=1e-6)
    assert mf["chi_c"] == pytest.approx(chi_ref, rel=1e-6)
    assert mf["xi_c"] == pytest.approx(xi_ref, rel=1e-6)
    assert mf["c_star"] == pytest.approx(published[0], abs=5e-6)
    assert mf["xi_c"] == pytest.approx(published[1], abs=5e-4)
    assert mf["chi1"] == pytest.approx(1.0, abs=1e-12)
    assert mf["phase"] == "critical"


def test_phases_and_undefined_values():
    mf = mean_field("relu", [1.5, 2.0, 3.0], 0.05)
    assert list(mf.phase) == ["ordered", "unbounded", "unbounded"]
    assert np.isnan(mf.q_star[1:]).all() and np.isnan(mf.xi_c[1:]).all()  # sigma_b2 > 0: q matters
    scale_free = mean_field("relu", 3.0, 0.0)  # no bias: c-map independent of q, xi_c still defined
    assert scale_free.phase == "unbounded" and np.isnan(scale_free.q_star)
    # relu without bias: c = 1 is marginally stable for every sigma_w2 (slope 1), so xi_c diverges
    assert float(scale_free.chi1) == pytest.approx(1.5) and float(scale_free.c_star) == 1.0
    assert float(scale_free.chi_c) == pytest.approx(1.0, abs=1e-12)
    dropout = mean_field("relu", 1.7, 0.0, keep_rate=0.8)  # just above 2 rho: unbounded, xi_c finite
    assert dropout.phase == "unbounded" and float(dropout.xi_c) == pytest.approx(1.5538, abs=1e-4)
    crit = mean_field("tanh", critical_sigma_w2("tanh", 0.05), 0.05)
    assert crit.phase == "critical" and crit.xi_c > 1e4
    assert mean_field("relu", 2.0, 0.0).to_dict()["xi_c"] is None  # diverges at criticality


def test_dropout_destroys_the_critical_point():
    # Section 3.1: with any dropout c* < 1 and xi_c stays finite across the transition.
    sw2 = np.linspace(1.0, 3.0, 41)
    no = mean_field("tanh", sw2, 0.05)
    yes = mean_field("tanh", sw2, 0.05, keep_rate=0.99)
    assert np.nanmax(no.xi_c) > 100
    assert np.all(yes.c_star < 1) and np.nanmax(yes.xi_c) < 60
    assert np.all(np.diff(mean_field("tanh", 2.0, 0.05, keep_rate=[1.0, 0.95, 0.9, 0.8]).c_star) < 0)


def test_grid_broadcast_equals_pointwise():
    sw2 = np.array([1.1, 2.2, 3.3])[:, None]
    sb2 = np.array([0.0, 0.1])
    grid = mean_field("tanh", sw2, sb2, keep_rate=0.95)
    assert grid.xi_c.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            one = mean_field("tanh", sw2[i, 0], sb2[j], keep_rate=0.95)
            assert grid.xi_c[i, j] == pytest.approx(float(one.xi_c), rel=1e-12)
            assert grid.c_star[i, j] == pytest.approx(float(one.c_star), rel=1e-12)


@pytest.mark.parametrize("sw2", [1.2, 2.5, 3.5])
def test_measured_depth_scales_agree_with_asymptotics(sw2):
    m = measured_depth_scales("tanh", sw2, 0.05, q0=0.8, c0=0.6, depth=200)
    assert float(m["xi_q_measured"]) == pytest.approx(float(m["xi_q"]), rel=0.03)
    assert float(m["xi_c_measured"]) == pytest.approx(float(m["xi_c"]), rel=0.03)


def test_custom_callable_matches_builtin():
    import torch

    def my_tanh(x):
        return torch.tanh(x)

    a = mean_field(my_tanh, 2.5, 0.05).to_dict()
    b = mean_field("tanh", 2.5, 0.05).to_dict()
    for key in ("q_star", "c_star", "chi1", "xi_c"):
        assert a[key] == pytest.approx(b[key], rel=1e-10)


def test_vanishing_signal_without_bias():
    # tanh without bias below sigma_w^2 = 1: q* = 0 exactly, chi1 = sigma_w^2 phi'(0)^2 = sigma_w^2.
    mf = mean_field("tanh", [0.5, 0.95], 0.0)
    np.testing.assert_array_equal(mf.q_star, [0.0, 0.0])
    np.testing.assert_allclose(mf.chi1, [0.5, 0.95], rtol=1e-12)
    assert float(critical_sigma_w2("tanh", 0.0)) == pytest.approx(1.0, abs=1e-5)
    # With dropout the linearised correlation map is c' = c / mu2, so c* = 0.
    assert float(mean_field("tanh", 0.5, 0.0, keep_rate=0.9).c_star) == pytest.approx(0.0, abs=1e-12)


def test_unstable_fixed_point_is_not_reported():
    # relu without bias just above sigma_w^2 mu2 = 2: q = 0 is a fixed point but an unstable one;
    # the iteration from q0 grows without bound.
    mf = mean_field("relu", [1.6016, 1.6, 1.59], 0.0, keep_rate=0.8)
    assert list(mf.phase) == ["unbounded", "critical", "ordered"]


def test_no_critical_point_where_the_bounded_branch_ends_first():
    # gelu at sigma_b^2 = 0.05 loses its stable variance fixed point while chi1 < 1.
    sw2 = float(critical_sigma_w2("gelu", 0.05))
    assert np.isnan(sw2)
    grid = mean_field("gelu", np.linspace(1, 2.5, 31), 0.05)
    assert np.nanmax(grid.chi1) < 0.9 and (grid.phase == "unbounded").any()


def test_an_iteration_that_does_not_settle_is_unsolved_not_unbounded():
    # One Newton step from far away cannot reach q*; the point has no answer yet and must say so, while
    # the same points with the default step limit converge to the bounded fixed point.
    import torch

    from deepprop.theory.depth_scales import classify
    from deepprop.theory.fixed_points import solve_q_star
    from deepprop.theory.maps import TensorPrior

    s = TensorPrior.build("tanh", np.array([1.5, 2.5, 3.5]), 0.05)
    q, bounded, _, chi, unsolved = solve_q_star(s, torch.tensor(1e6, dtype=torch.float64), max_iter=1)
    q_ok, bounded_ok, _, chi_ok, unsolved_ok = solve_q_star(s, 1.0)
    assert bool(bounded_ok.all()) and not bool(unsolved_ok.any())
    assert bool(unsolved.all()) and not bool(bounded.any()) and bool(torch.isnan(q).all())
    labels = classify(chi.numpy(), bounded.numpy(), 1e-3, unsolved.numpy())
    assert list(labels) == ["unsolved"] * 3
    assert "unsolved" not in classify(chi_ok.numpy(), bounded_ok.numpy(), 1e-3, unsolved_ok.numpy())


def test_measured_depth_scales_say_where_a_fit_is_the_windows_not_the_networks():
    """ReLU at sigma_w2 = 3, sigma_b2 = 0 (unbounded q, xi_c infinite): the fitted xi_c follows the depth of
    the window (it roughly doubles from 150 to 300 layers), so the result notes it; a tanh point with a finite
    xi_c gives the same fit at both depths (within 1 %) and no note."""
    from deepprop.theory.meanfield import measured_depth_scales

    relu = [measured_depth_scales("relu", 3.0, 0.0, depth=d) for d in (150, 300)]
    assert relu[1]["xi_c_measured"] > 1.5 * relu[0]["xi_c_measured"]
    assert any("set by the 300-layer window" in n for n in relu[1]["notes"])
    assert any("xi_q_measured: NaN" in n for n in relu[1]["notes"])
    tanh = [measured_depth_scales("tanh", 2.5, 0.05, depth=d) for d in (150, 300)]
    assert tanh[1]["xi_c_measured"] == pytest.approx(tanh[0]["xi_c_measured"], rel=0.01)
    assert tanh[1]["notes"] == []
