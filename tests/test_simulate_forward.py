"""Forward propagation in finite networks against closed forms and the mean-field engine."""

import math

import numpy as np
import pytest

from deepprop.simulate.forward import simulate_forward
from deepprop.theory.meanfield import trajectory


def _closed_form_relu_dropout_c_star(keep_rate: float) -> float:
    """Follow-ups sec. 1: at sw2 = 2 rho, sb2 = 0, c' = (sqrt(1-c^2) + (pi - arccos c) c) / (pi mu2)."""
    mu2, c = 1.0 / keep_rate, 0.5
    for _ in range(500):
        c = (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (math.pi * mu2)
    return c


def test_closed_form_fixed_points_match_follow_up_examples():
    assert _closed_form_relu_dropout_c_star(0.8) == pytest.approx(0.47280, abs=1e-5)
    assert _closed_form_relu_dropout_c_star(0.6) == pytest.approx(0.28391, abs=1e-5)


def test_linear_network_with_dropout_follows_linear_maps():
    # Linear phi: q' = sw2 mu2 q + sb2 and q_ab' = sw2 q_ab + sb2 exactly in expectation.
    sw2, sb2, rho, q0, c0 = 0.9, 0.1, 0.8, 1.0, 0.3
    res = simulate_forward("linear", sw2, sb2, width=400, depth=6, q0=q0, c0=c0, keep_rate=rho,
                           networks=8, pairs=16, seed=1)
    q, qab = [q0], [q0 * c0]
    for _ in range(6):
        q.append(sw2 * q[-1] / rho + sb2)
        qab.append(sw2 * qab[-1] + sb2)
    q, c = np.array(q), np.array(qab) / np.array(q)
    np.testing.assert_allclose(res.q, q, rtol=0.03)
    np.testing.assert_allclose(res.c, c, atol=0.02)


def test_relu_dropout_critical_c_star_matches_closed_form_width_2000():
    rho = 0.8
    res = simulate_forward("relu", 2 * rho, 0.0, width=2000, depth=10, q0=1.0, c0=0.9, keep_rate=rho,
                           networks=3, pairs=16, seed=2, dtype="float32")
    c_star = _closed_form_relu_dropout_c_star(rho)
    # xi_c = 1.55: after 6 layers the residual 0.43 e^{-6/1.55} < 0.01; average the last layers
    assert abs(res.c[6:].mean() - c_star) < 0.02
    assert res.theory is not None and res.theory["c_star"] == pytest.approx(c_star, abs=1e-4)
    # q is preserved at sw2 = 2 rho (follow-ups sec. 1): q^l = q0 in expectation
    np.testing.assert_allclose(res.q, 1.0, rtol=0.05)


@pytest.mark.slow
@pytest.mark.parametrize("sw2", [1.5, 2.5, 4.0])
def test_tanh_width_1000_matches_engine_trajectory(sw2):
    depth = 8
    res = simulate_forward("tanh", sw2, 0.05, width=1000, depth=depth, q0=0.8, c0=0.6, networks=12, pairs=24,
                           seed=3, dtype="float32")
    q_th, c_th = trajectory("tanh", sw2, 0.05, q0=0.8, c0=0.6, depth=depth)
    q_th, c_th = np.ravel(q_th), np.ravel(c_th)
    rel = np.abs(res.q[1:] / q_th[1:] - 1)
    assert rel.max() < 0.02, rel
    assert np.abs(res.c - c_th).max() < 0.02, res.c - c_th
    np.testing.assert_allclose(res.q_theory, q_th)


def test_seed_reproducible_and_json_contract():
    kw = dict(width=50, depth=4, networks=2, pairs=3, keep_rate=0.9)
    a = simulate_forward("tanh", 2.0, 0.05, seed=11, **kw).to_dict()
    b = simulate_forward("tanh", 2.0, 0.05, seed=11, **kw).to_dict()
    c = simulate_forward("tanh", 2.0, 0.05, seed=12, **kw).to_dict()
    assert a == b and a["layers"] != c["layers"]
    assert {"layers", "xi_q_fit", "xi_c_fit", "xi_q", "xi_c"} <= set(a)
    assert [r["layer"] for r in a["layers"]] == [0, 1, 2, 3, 4]
    assert {"layer", "q", "q_theory", "c", "c_theory"} <= set(a["layers"][0])
