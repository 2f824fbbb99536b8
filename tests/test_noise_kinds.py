"""Every noise kind against sampling: its moments and law, the maps with it, and finite networks with it.

The new kind (UniformDropout, eps ~ U(1 - a, 1 + a)) is added in three files: its class in
deepprop/noise_models.py, its export line in deepprop/__init__.py and this test. Independent references:
numpy draws of eps (never deepprop's own draw for the maps), closed forms of a linear network's recursion,
and the Gaussian-quadrature-free sample moments.
"""

import math

import numpy as np
import pytest
import torch
from reference import ACTS, sampled_layer

import deepprop
from deepprop import NetworkPrior, UniformDropout
from deepprop.networks import Ensemble, LayerNoise
from deepprop.noise_models import Dropout, GaussianAdditive, GaussianMultiplicative
from deepprop.simulate import simulate_forward
from deepprop.theory.backprop import gradient_theory
from deepprop.theory.maps import TensorPrior, c_map, q_map
from deepprop.theory.spectrum import jacobian_moments

KINDS = [Dropout(0.7), GaussianMultiplicative(0.4), GaussianAdditive(0.3), UniformDropout(0.8), UniformDropout(1.0)]
N = 2_000_000


def _draw(kind, n: int = N, seed: int = 0) -> torch.Tensor:
    """eps of one kind from deepprop's LayerNoise (the finite networks' draw), float64."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.full((1, 1, n), 1.0 if kind.multiplicative else 0.0, dtype=torch.float64)
    out, _ = LayerNoise(extra=(kind,)).apply(y, lambda s: torch.rand(y.shape, generator=gen, dtype=y.dtype),
                                             lambda s: torch.randn(y.shape, generator=gen, dtype=y.dtype))
    return out.reshape(-1)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: f"{type(k).__name__}-{k.value}")
def test_moments_match_the_finite_network_draw(kind):
    eps = _draw(kind).numpy()
    if kind.multiplicative:
        assert abs(eps.mean() - 1.0) < 5 * eps.std() / math.sqrt(N)
        for power, moment in ((2, kind.mu2()), (4, kind.mu4())):
            x = eps**power
            assert abs(x.mean() - moment) < 5 * x.std() / math.sqrt(N), (power, x.mean(), moment)
    else:
        assert abs(eps.mean()) < 5 * eps.std() / math.sqrt(N)
        x = eps**2
        assert abs(x.mean() - kind.add_var()) < 5 * x.std() / math.sqrt(N)
        assert kind.mu2() == 1.0 and kind.mu4() == 1.0


@pytest.mark.parametrize("kind", [k for k in KINDS if k.multiplicative], ids=lambda k: f"{type(k).__name__}-{k.value}")
def test_law_of_eps2_matches_the_draw(kind):
    """The spectrum's law of eps^2 / E[eps^2]: P(eps != 0), its mean 1 and its second moment mu4 / mu2^2, and
    the sampled distribution function at three points."""
    values, probs, nonzero = kind.eps2_law()
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert nonzero * (probs * values).sum() == pytest.approx(1.0, rel=1e-12)
    assert nonzero * (probs * values**2).sum() == pytest.approx(float(kind.mu4()) / float(kind.mu2()) ** 2, rel=1e-10)
    eps2 = (_draw(kind, seed=1).numpy() ** 2) / float(kind.mu2())
    assert abs((eps2 != 0).mean() - nonzero) < 5 * math.sqrt(nonzero * (1 - nonzero) / N) + 1e-12
    if isinstance(kind, UniformDropout):  # a continuous law: compare E[1 / (1 + t eps2)] (what psi integrates)
        for t in (0.3, 1.0, 4.0):
            sample = 1.0 / (1.0 + t * eps2)
            law = (probs / (1.0 + t * values)).sum()
            assert law == pytest.approx(sample.mean(), abs=5 * sample.std() / math.sqrt(N))


@pytest.mark.parametrize("name", ["tanh", "relu", "erf", "sin"])
def test_maps_with_uniform_dropout_against_monte_carlo(name):
    """One wide layer by sampling with eps ~ U(1 - a, 1 + a) drawn by numpy, independently per input."""
    q, c, sw2, sb2, a, rho = 0.9, 0.55, 1.7, 0.1, 0.7, 0.85

    def noisy(rng, f1, f2):
        n = f1.size
        eps = [rng.uniform(1 - a, 1 + a, n) * (rng.random(n) < rho) / rho for _ in range(2)]
        return f1 * eps[0], f2 * eps[1]

    mc_q, se_q, mc_qab, se_qab = sampled_layer(ACTS[name][0], q, c, sw2, sb2, noisy, seed=5)

    prior = NetworkPrior.build(name, sw2, sb2, keep_rate=rho, extra_noise=UniformDropout(a))
    assert float(prior.mu2) == pytest.approx((1 + a * a / 3) / rho, rel=1e-14)
    s = TensorPrior.from_prior(prior)
    qt = torch.tensor(q, dtype=torch.float64)
    q_next = q_map(s, qt).item()
    c_next = c_map(s, qt, torch.tensor(c, dtype=torch.float64)).item()
    assert abs(q_next - mc_q) < 5 * se_q
    assert abs(c_next * q_next - mc_qab) < 5 * se_qab


def test_linear_network_with_uniform_dropout_follows_the_linear_maps():
    """Finite networks draw the new kind (LayerNoise, stream 3): q' = sw2 mu2 q + sb2, q_ab' = sw2 q_ab + sb2."""
    sw2, sb2, a, q0, c0 = 0.9, 0.1, 0.9, 1.0, 0.3
    prior = NetworkPrior.build("linear", sw2, sb2, extra_noise=UniformDropout(a))
    res = simulate_forward(prior, width=400, depth=6, q0=q0, c0=c0, networks=16, pairs=16, seed=1)
    mu2 = 1 + a * a / 3
    q, qab = [q0], [q0 * c0]
    for _ in range(6):
        q.append(sw2 * mu2 * q[-1] + sb2)
        qab.append(sw2 * qab[-1] + sb2)
    q, c = np.array(q), np.array(qab) / np.array(q)
    # q^l of a growing linear network scatters from network to network: within 4 standard errors (16 networks)
    assert np.all(np.abs(res.q[1:] - q[1:]) < 4 * res.q_err[1:]), (res.q - q) / res.q_err
    np.testing.assert_allclose(res.c, c, atol=0.02)
    np.testing.assert_allclose(res.q_theory, q, rtol=1e-12)  # the engine's trajectory carries the same mu2


def test_finite_network_masks_of_the_new_kind_are_independent_per_input():
    ens = Ensemble.from_prior(NetworkPrior.build("tanh", 1.0, 0.0, extra_noise=UniformDropout(1.0)), 500,
                              networks=2)
    mult, add = ens.draw_noise(ens.generator(3), torch.ones(2, 500, 400, dtype=torch.float64))
    assert add is None and float(mult.min()) >= 0.0 and float(mult.max()) <= 2.0
    corr = np.corrcoef(mult[:, :, 0::2].reshape(-1).numpy(), mult[:, :, 1::2].reshape(-1).numpy())[0, 1]
    assert abs(corr) < 5 / math.sqrt(mult.numel() / 2)


def test_backprop_and_spectrum_consult_the_kind():
    """kappa and the Jacobian spread use E[eps^4] / E[eps^2]^2 of the kind (relu at q = 1: phi'^2 in {0, 1})."""
    a = 0.6
    kind = UniformDropout(a)
    ratio = float(kind.mu4()) / float(kind.mu2()) ** 2
    # relu: a = (eps phi')^2, E[a^2] / E[a]^2 = ratio * E[phi'^4] / E[phi'^2]^2 = 2 ratio
    m = jacobian_moments(NetworkPrior.build("relu", 2.0, 0.0, extra_noise=kind), depth=5, q=1.0,
                         weights="orthogonal")
    assert m.spread == pytest.approx(5 * (2 * ratio - 1), rel=1e-9)
    g = gradient_theory(NetworkPrior.build("relu", 1.5, 0.0, extra_noise=kind))
    assert float(g["kappa"]) == pytest.approx(3 * 2 * ratio - 1, rel=1e-9)


def test_new_kind_is_exported_at_the_top_level():
    assert deepprop.UniformDropout is UniformDropout
    with pytest.raises(deepprop.ParameterError, match="uniform_dropout"):
        NetworkPrior.build("tanh", 1.0, 0.0, extra_noise=UniformDropout(1.5))
