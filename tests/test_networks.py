"""Random-network ensembles: weight/noise distributions, exact initial pairs, fits, seeds, validation."""

import math

import numpy as np
import pytest
import torch

from deepprop.errors import ParameterError
from deepprop.networks import Ensemble
from deepprop.simulate.fitting import fit_growth, fit_relaxation
from deepprop.simulate.forward import initial_pairs, pair_statistics


def test_gaussian_weights_have_variance_sw2_over_fan_in():
    ens = Ensemble.build("tanh", (1.5, 3.0), 0.1, 400, networks=3)
    w = ens.draw_weights(ens.generator(1), 400, 200)
    assert w.shape == (6, 400, 200)
    var = w.var(dim=(1, 2)).numpy()
    # 80000 entries per network: relative standard error of the variance ~ sqrt(2/80000) = 0.5 %
    np.testing.assert_allclose(var, np.repeat([1.5, 3.0], 3) / 200, rtol=0.03)
    # the two sigma_w2 copies are the same standard draw, scaled
    torch.testing.assert_close(w[3:] / math.sqrt(3.0), w[:3] / math.sqrt(1.5))


@pytest.mark.parametrize("shape", [(50, 50), (60, 40), (30, 70)])
def test_orthogonal_weights_are_scaled_isometries(shape):
    n_out, n_in = shape
    ens = Ensemble.build("tanh", 2.0, 0.0, 50, networks=2, weights="orthogonal")
    w = ens.draw_weights(ens.generator(0), n_out, n_in).double()
    if n_out >= n_in:  # W^T W = sw2 * n_out / n_in * I   (entries of variance sw2 / n_in)
        gram, expect = w.transpose(1, 2) @ w, 2.0 * n_out / n_in * torch.eye(n_in, dtype=torch.float64)
    else:  # W W^T = sw2 * I
        gram, expect = w @ w.transpose(1, 2), 2.0 * torch.eye(n_out, dtype=torch.float64)
    torch.testing.assert_close(gram, expect.expand_as(gram), atol=1e-10, rtol=0)
    assert abs(w.var().item() - 2.0 / n_in) < 0.15 * 2.0 / n_in


def test_dropout_masks_independent_per_unit_and_input():
    ens = Ensemble.build("relu", 2.0, 0.0, 1000, networks=2, keep_rate=0.7)
    mult, add = ens.draw_noise(ens.generator(3), torch.ones(2, 1000, 200, dtype=torch.float64))
    assert add is None
    keep = (mult > 0).double()
    assert abs(keep.mean().item() - 0.7) < 0.01
    np.testing.assert_allclose(mult.unique().numpy(), [0.0, 1 / 0.7])
    assert abs((mult**2).mean().item() - 1 / 0.7) < 0.02  # mu2 = 1/rho
    # columns 0 and 1 (the two inputs of a pair) are kept together with probability rho^2
    both = (keep[:, :, 0::2] * keep[:, :, 1::2]).mean().item()
    assert abs(both - 0.49) < 0.01


def test_gaussian_multiplicative_and_additive_noise_moments():
    ens = Ensemble.build("tanh", 1.0, 0.0, 100, noise_mult=0.5, noise_add=0.3)
    assert ens.noise.mu2 == pytest.approx(1.25)
    mult, add = ens.draw_noise(ens.generator(0), torch.zeros(1, 500, 400, dtype=torch.float64))
    assert abs(mult.mean().item() - 1.0) < 0.01 and abs(mult.var().item() - 0.25) < 0.01
    assert abs(add.mean().item()) < 0.01 and abs(add.var().item() - 0.09) < 0.003


@pytest.mark.parametrize("c0", [-1.0, -0.3, 0.0, 0.6, 1.0])
def test_initial_pairs_have_exact_statistics(c0):
    ens = Ensemble.build("tanh", 1.0, 0.0, 64, networks=3)
    z = initial_pairs(ens, ens.generator(0), 5, 0.8, c0)
    assert z.shape == (3, 64, 10)
    np.testing.assert_allclose((z * z).mean(dim=1).numpy(), 0.8, rtol=1e-12)
    q, c = pair_statistics(z)
    np.testing.assert_allclose(c.numpy(), c0, atol=1e-12)


def test_same_seed_same_networks_other_seed_different():
    ens = Ensemble.build("tanh", 2.0, 0.05, 30, networks=2, keep_rate=0.9)
    a = ens.draw_weights(ens.generator(5)), ens.draw_noise(ens.generator(5), torch.ones(2, 30, 4))[0]
    b = ens.draw_weights(ens.generator(5)), ens.draw_noise(ens.generator(5), torch.ones(2, 30, 4))[0]
    c = ens.draw_weights(ens.generator(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c)


@pytest.mark.parametrize(
    "kwargs, param",
    [({"width": 0}, "width"), ({"keep_rate": 0.0}, "keep_rate"), ({"keep_rate": 1.5}, "keep_rate"),
     ({"sigma_w2": -1.0}, "sigma_w2"), ({"sigma_b2": -0.1}, "sigma_b2"), ({"weights": "uniform"}, "weights"),
     ({"networks": 0}, "networks"), ({"noise_mult": -1.0}, "noise_mult"), ({"dtype": "float16"}, "dtype")],
)
def test_bad_hyperparameters_name_the_parameter(kwargs, param):
    args = {"activation": "tanh", "sigma_w2": 1.0, "sigma_b2": 0.0, "width": 10, **kwargs}
    with pytest.raises(ParameterError) as info:
        Ensemble.build(args.pop("activation"), args.pop("sigma_w2"), args.pop("sigma_b2"), args.pop("width"),
                       **args)
    assert info.value.param == param


def test_fits_recover_known_depth_scales():
    layers = np.arange(40)
    rng = np.random.default_rng(0)
    resid = 0.3 * np.exp(-layers / 4.0) * (1 + 0.01 * rng.standard_normal(40))
    xi, n = fit_relaxation(layers, resid + 1e-6, floor=1e-4, start=0)
    assert xi == pytest.approx(4.0, rel=0.02) and 30 <= n <= 40  # stops where the floor is reached
    s, err, n = fit_growth(layers, 5.0 * np.exp(-(39 - layers) / -7.5))  # exploding: signed scale
    assert s == pytest.approx(-7.5, rel=1e-9) and n == 40
    xi, n = fit_relaxation(layers, np.full(40, 1e-8), floor=1e-4)
    assert math.isnan(xi) and n == 0


def test_exponential_approach_recovers_a_known_depth_scale_and_reports_a_failed_fit_without_warnings():
    """y = y_inf + A exp(-l / xi) with known (y_inf, A, xi) plus small noise: the free-asymptote fit returns xi
    and y_inf; a flat noisy series (amplitude within noise) and one with too few finite layers are reported
    failures (nan and a reason); neither leaks
    scipy's covariance warning nor numpy's overflow warning."""
    import warnings

    from deepprop.simulate.fitting import fit_exponential_approach

    rng = np.random.default_rng(3)
    layers = np.arange(40.0)
    clean = 0.7 + 2.0 * np.exp(-layers / 6.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        xi, y_inf, reason = fit_exponential_approach(layers, clean + rng.normal(0, 1e-4, layers.size),
                                                     sigma=np.full(layers.size, 1e-4))
        assert reason is None and xi == pytest.approx(6.0, rel=1e-2) and y_inf == pytest.approx(0.7, abs=1e-3)
        for seed in range(5):  # a flat, noisy series has no depth scale to report
            flat = 0.7 + np.random.default_rng(seed).normal(0, 1e-3, layers.size)
            xi, _, reason = fit_exponential_approach(layers, flat, sigma=np.full(layers.size, 1e-3))
            assert math.isnan(xi) and "no relaxation resolved" in reason
        short = np.where(layers < 4, clean, np.nan)
        xi, _, reason = fit_exponential_approach(layers, short)
        assert math.isnan(xi) and "finite layers" in reason
