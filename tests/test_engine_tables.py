"""The engine's batch paths: interpolated Hermite coefficients, half rules for odd activations, per-point
truncation orders and block-wise solving, each against an independent computation (adaptive quadrature,
tensor Gauss-Hermite, brentq) and against the quadrature they replace. No timing here."""

import math

import numpy as np
import pytest
import torch
from reference import ACTS, Reference, gauss1, gauss2

from deepprop import get_activation
from deepprop.theory import coefficients, gauss
from deepprop.theory.kernels import kernel_for
from deepprop.theory.meanfield import mean_field, trajectory

T = lambda x: torch.tensor(x, dtype=torch.float64)  # noqa: E731


def _log_uniform(n, lo, hi, seed):
    rng = np.random.default_rng(seed)
    return T(np.exp(rng.uniform(math.log(lo), math.log(hi), n)))


@pytest.mark.parametrize("name", ["tanh", "gelu"])
def test_interpolated_series_matches_quadrature_and_reference(name):
    # A batch large enough for the table: every point against the series built by quadrature at that q
    # (the table's error, measured 2e-14), and a few against a 240-point tensor Gauss-Hermite rule.
    act = get_activation(name)
    q = _log_uniform(coefficients.TABLE_MIN_POINTS + 44, 1e-25, 16.0, seed=1)
    table_series = coefficients.hermite_series(act, q)
    assert (act, torch.float64, "cpu") in coefficients._COEFFICIENT_TABLES  # the batch went through the table
    built = gauss.HermiteSeries(act, q)
    assert table_series.odd == built.odd == (name == "tanh")
    np.testing.assert_allclose(table_series.second_moment.numpy(), built.second_moment.numpy(), rtol=1e-12)
    for c in (-0.9, 0.3, 0.99, 1.0):
        cc = torch.full_like(q, c)
        v_tab, d_tab = table_series.value_and_slope(cc)
        v_ref, d_ref = built.value_and_slope(cc)
        scale = built.second_moment.numpy()  # K and dK/dc are at most ~V and ~q V'; cancellation near K = 0
        assert np.all((v_tab - v_ref).abs().numpy() <= 1e-12 * scale)
        assert np.all((d_tab - d_ref).abs().numpy() <= 1e-11 * (scale + d_ref.abs().numpy()))
    f = ACTS[name][0]
    for i in (3, 100, 250):
        qi = float(q[i])
        if qi > 1e-6:  # below, K ~ q c and the 2-D rule adds nothing
            for c in (0.4, 0.97):
                ref = gauss2(f, f, qi, c)
                assert float(table_series.value(torch.full_like(q, c))[i]) == pytest.approx(ref, rel=1e-9, abs=1e-14)


def test_small_batches_keep_the_quadrature_series():
    act = get_activation("tanh")
    q = _log_uniform(10, 0.1, 3.0, seed=2)
    coefficients._COEFFICIENT_TABLES.clear()
    coefficients.hermite_series(act, q)
    assert not coefficients._COEFFICIENT_TABLES


@pytest.mark.parametrize("use_table", [False, True])
def test_cut_points_carry_their_own_order_into_the_error_bound(use_table):
    # c_max mixes points that need every order with points cut after FIRST_ORDER: the truncation bound at
    # each point must use that point's last order, and bound the difference to the full series.
    act = get_activation("tanh")
    n = coefficients.TABLE_MIN_POINTS if use_table else 4
    q = torch.full((n,), 2.5, dtype=torch.float64)
    c_max = torch.full((n,), 0.3, dtype=torch.float64)
    c_max[1] = 0.999
    c_max[2] = 0.8  # the table keeps orders up to 95 here (its middle block), the quadrature series all
    series = coefficients.hermite_series(act, q, c_max) if use_table else gauss.HermiteSeries(act, q, c_max=c_max)
    assert series.order == 200
    assert int(series.point_order[0]) == gauss.FIRST_ORDER and int(series.point_order[1]) == 200
    assert int(series.point_order[2]) == (95 if use_table else 200)
    full = gauss.HermiteSeries(act, q)
    kernel = kernel_for(act)
    pair = kernel.pair(q, c_max=c_max)
    for c in (0.3, 0.8, 0.9):
        cc = torch.full_like(q, c)
        bound = pair.error_bound(cc)
        exact_drop = (full.value(cc) - pair.value(cc)).abs()
        assert bool((exact_drop <= bound + 1e-13).all())  # + the table's interpolation error (~3e-15 here)
        # the cut point's bound grows like c^64, not c^201: at c = 0.9 it is far above round-off
        assert float(bound[0]) > 1e3 * float(bound[1]) if c == 0.9 else True


def _reference(name, kind, ref_fn, q):
    """Adaptive quadrature; for sin the closed forms (its integrands oscillate fast at large q):
    E[sin^2] = (1 - e^(-2q)) / 2, E[cos^2] = (1 + e^(-2q)) / 2, E[u sin u cos u] = q e^(-2q)."""
    if name == "sin":
        e = math.exp(-2 * q)
        return {"v": (1 - e) / 2, "d": (1 + e) / 2, "s": q * e}[kind]
    return gauss1(ref_fn, q)


@pytest.mark.parametrize("name,odd", [("tanh", True), ("erf", True), ("sin", True), ("gelu", False),
                                      ("softplus", False), ("relu", False)])
def test_oddness_and_half_rule(name, odd):
    act = get_activation(name)
    assert gauss.is_odd(act) == odd
    if act.kinks:
        return
    f, d, _ = ACTS[name]
    q = T([0.01, 0.8, 5.0, 12.0])
    fn, dn = act.fn, act.derivative
    for kind, integrand, ref_fn in (("v", lambda x: fn(x) ** 2, lambda x: f(x) ** 2),
                                    ("d", lambda x: dn(x) ** 2, lambda x: d(x) ** 2),
                                    ("s", lambda x: x * fn(x) * dn(x), lambda x: x * f(x) * d(x))):
        full = gauss.expect(integrand, act, q)
        if odd:
            half = gauss.expect(integrand, act, q, even=True)
            np.testing.assert_allclose(half.numpy(), full.numpy(), rtol=1e-13, atol=1e-15)
        for qi, v in zip(q.tolist(), full.tolist(), strict=True):
            assert v == pytest.approx(_reference(name, kind, ref_fn, qi), rel=1e-10, abs=1e-14)


def test_block_solved_grid_matches_reference_and_chunking():
    # More than one block (16384 points) and chunk: warm starts and c* per block, q* quadrature per chunk,
    # c* through the cut series, the full one and direct quadrature near c = 1. Checked against brentq on
    # adaptive quadrature, and against a run with other chunk sizes (the same numbers to round-off).
    sw2 = np.linspace(0.9, 4.0, 150)
    sb2 = np.linspace(0.0, 0.3, 120)
    mf = mean_field("tanh", sw2[:, None], sb2[None, :], show_progress=False)
    other = mean_field("tanh", sw2[:, None], sb2[None, :], chunk_size=1000, show_progress=False)
    for key in ("q_star", "c_star", "chi1", "chi_c", "xi_q"):
        np.testing.assert_allclose(getattr(other, key), getattr(mf, key), rtol=1e-12, atol=1e-300)
    rng = np.random.default_rng(5)
    picks = list(zip(rng.integers(0, 150, 6), rng.integers(1, 120, 6), strict=True))
    # chaotic points just past the critical line: c* close to 1, where the cut series is not enough
    chaotic_edge = np.argwhere((mf.chi1 > 1.0005) & (mf.chi1 < 1.01) & (np.arange(120)[None, :] > 0))
    picks += [tuple(chaotic_edge[len(chaotic_edge) // 2])]
    for i, j in picks:
        ref = Reference("tanh", sw2[i], sb2[j])
        q = ref.q_star()
        assert mf.q_star[i, j] == pytest.approx(q, rel=1e-9)
        assert mf.chi1[i, j] == pytest.approx(ref.chi1(q), rel=1e-9)
        c = ref.c_star(q)
        assert mf.c_star[i, j] == pytest.approx(c, rel=1e-8, abs=1e-12)
        if c < 1.0:
            assert mf.chi_c[i, j] == pytest.approx(ref.chi_c(q, c), rel=1e-7)
    assert float(mf.c_star[chaotic_edge[len(chaotic_edge) // 2][0], chaotic_edge[len(chaotic_edge) // 2][1]]) > 0.9


def test_large_distinct_prior_trajectory_matches_reference():
    # Enough distinct priors for the interpolated series at every layer, with pairs close to c = 1 (every
    # order) and far from it (cut orders); a few checked layer by layer against adaptive quadrature.
    sw2 = np.linspace(1.0, 3.0, 20)
    sb2 = np.linspace(0.0, 0.2, 20)
    q, c = trajectory("tanh", sw2[:, None], sb2[None, :], q0=1.0, c0=np.array([0.3, 0.98])[:, None, None], depth=4)
    for k, i, j in ((0, 3, 7), (1, 15, 2), (1, 19, 19)):
        ref = Reference("tanh", sw2[i], sb2[j])
        qq, cc = [1.0], [(0.3, 0.98)[k]]
        for _ in range(4):
            q_next = ref.Q(qq[-1])
            cc.append((ref.sw2 * ref.K(qq[-1], cc[-1]) + ref.sb2) / q_next)
            qq.append(q_next)
        np.testing.assert_allclose(q[k, i, j], qq, rtol=1e-10)
        np.testing.assert_allclose(c[k, i, j], cc, rtol=1e-8)


def test_series_track_equals_fresh_series_as_variances_settle():
    # Layer by layer, some variances settle (unchanged to the last bit) while others move, and |c| grows so
    # that points come to need the orders above FIRST_ORDER: the tracked series must equal one built afresh
    # from the table at every layer (same interpolation; only round-off of the sums may differ).
    act = get_activation("tanh")
    n = coefficients.TABLE_MIN_POINTS + 20
    q = _log_uniform(n, 0.05, 12.0, seed=7)
    track = coefficients.series_track(act, q)
    rng = np.random.default_rng(8)
    c = T(rng.uniform(-0.6, 0.6, n))
    for _ in range(4):
        extremes = tuple(float(v) for v in torch.aminmax(q))
        tracked = track.series(q, c.abs(), extremes)
        fresh = coefficients.hermite_series(act, q, c.abs())
        np.testing.assert_allclose(tracked.value(c).numpy(), fresh.value(c).numpy(), rtol=1e-14, atol=1e-16)
        np.testing.assert_allclose(tracked.second_moment.numpy(), fresh.second_moment.numpy(), rtol=0, atol=0)
        assert torch.equal(torch.as_tensor(tracked.point_order), torch.as_tensor(fresh.point_order))
        moving = torch.rand(n, generator=torch.Generator().manual_seed(9), dtype=torch.float64) < 0.5
        q = torch.where(moving, q * 1.01, q)
        c = torch.clamp(c.abs() * 1.5, max=0.999)
    assert bool((torch.as_tensor(tracked.point_order) == 200).any())  # some points came to need every order
