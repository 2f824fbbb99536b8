"""xi_cov of eq. 17 against an independent 2-D Gauss-Hermite evaluation of its backward rate."""

import numpy as np
import pytest

from deepprop import mean_field


def _rate(dphi, sigma_w2, q, c, deg=120):
    # sigma_w^2 E[phi'(u1) phi'(u2)], u1 = sqrt(q) z1, u2 = sqrt(q) (c z1 + sqrt(1-c^2) z2): eq. 17's factor
    x, w = np.polynomial.hermite_e.hermegauss(deg)
    w = w / w.sum()
    z1, z2 = np.meshgrid(x, x, indexing="ij")
    u1 = np.sqrt(q) * z1
    u2 = np.sqrt(q) * (c * z1 + np.sqrt(1 - c * c) * z2)
    return sigma_w2 * np.sum(np.outer(w, w) * dphi(u1) * dphi(u2))


@pytest.mark.parametrize("sw2,keep", [(1.5, 1.0), (2.5, 1.0), (2.0, 0.95), (3.0, 0.9)])
def test_xi_cov_is_the_backward_covariance_rate(sw2, keep):
    mf = mean_field("tanh", sw2, 0.05, keep_rate=keep)
    rate = _rate(lambda u: 1 / np.cosh(u) ** 2, sw2, float(mf.q_star), float(mf.c_star))
    assert float(mf.xi_cov) == pytest.approx(-1 / np.log(rate), rel=1e-6)
