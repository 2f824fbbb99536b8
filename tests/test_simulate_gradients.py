"""Gradient experiment: backprop identities, depth-scale agreement with theory, resumable sweeps."""

import numpy as np
import pytest
import torch

from deepprop.errors import ParameterError
from deepprop.networks import Ensemble
from deepprop.simulate.gradients import (
    backward_errors,
    forward_pass,
    layer_gradient_stats,
    output_error,
    shared_errors,
    simulate_gradients,
)
from deepprop.theory.meanfield import mean_field


def _small_pass(keep_rate=0.8):
    ens = Ensemble.build("tanh", (1.2, 2.5), 0.05, 12, networks=2, keep_rate=keep_rate)
    x = torch.randn(ens.batch, 5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 0, 1, 2]).view(1, 1, -1)
    fp = forward_pass(ens, x.requires_grad_(True), 4, 3, ens.generator(1), keep_weights=True)
    return ens, fp, labels


def test_hand_backward_with_forward_weights_and_masks_equals_autograd():
    ens, fp, labels = _small_pass()
    auto = shared_errors(fp, labels)
    hand = backward_errors(ens, fp, output_error(fp.logits, labels).detach(), fp.weights, fp.masks)
    for a, h in zip(auto, hand, strict=True):
        torch.testing.assert_close(h.detach(), a, rtol=1e-10, atol=1e-14)


def test_gram_identity_gives_weight_gradient_norm_and_per_example_covariance():
    ens, fp, labels = _small_pass()
    deltas = shared_errors(fp, labels)
    b = labels.shape[-1]
    for l in range(4):
        y, d = fp.inputs[l].detach(), deltas[l]
        st = layer_gradient_stats(y, d)
        grad_w = torch.einsum("kib,kjb->kij", d, y)  # dE/dW^l = sum_a delta_a y_a^T
        torch.testing.assert_close(st["grad_sq_norm"], grad_w.pow(2).sum(dim=(1, 2)), rtol=1e-10, atol=0)
        per_ex = b * torch.einsum("kia,kja->kaij", d, y)  # grad of E_a alone
        inner = torch.einsum("kaij,kbij->kab", per_ex, per_ex)
        off = ~torch.eye(b, dtype=torch.bool)
        torch.testing.assert_close(st["grad_cov"], inner[:, off].mean(dim=1), rtol=1e-10, atol=0)


def test_autograd_errors_match_weight_gradients():
    # Independent check of the shared mode: autograd on the weights themselves (a replayed network).
    ens, fp, labels = _small_pass(keep_rate=1.0)
    ws = [w.detach().clone().requires_grad_(True) for w in fp.weights]
    y = fp.inputs[0].detach()
    for l, w in enumerate(ws):
        b = (fp.zs[l] if l < 4 else fp.logits) - torch.bmm(fp.weights[l], fp.inputs[l])
        z = torch.bmm(w, y) + b.detach()
        y = torch.tanh(z)
    loss = torch.nn.functional.cross_entropy(z, labels.expand(4, 1, -1).squeeze(1), reduction="sum") / 6
    loss.backward()
    deltas = shared_errors(fp, labels)
    for l in range(4):
        st = layer_gradient_stats(fp.inputs[l].detach(), deltas[l])
        torch.testing.assert_close(st["grad_sq_norm"], ws[l].grad.pow(2).sum(dim=(1, 2)), rtol=1e-9, atol=0)


@pytest.mark.slow
@pytest.mark.parametrize("backprop", ["independent", "shared"])
def test_gradient_depth_scale_within_8_percent_of_theory(backprop):
    sweep = [1.0, 1.25, 2.5, 4.0]  # in [1, 1.5] and [2.2, 4]: away from criticality (sw2 ~ 1.76)
    # xi_grad_fit is the per-example fit (eq. 16's quantity). Measured over seeds 0-2, both modes, these
    # four sw2: worst deviation 4.2 % (independent, seed 1, sw2 = 2.5), jackknife errors 0.5-4.3 % of xi;
    # 8 % is twice the worst observed deviation and ~2 sigma of the widest error (was 15 % for the
    # batch-summed norm, whose cross terms follow eq. 17 instead).
    res = simulate_gradients("tanh", sweep, 0.05, width=300, depth=80, networks=8, batch_size=32,
                             backprop=backprop, seed=0)
    theory = -1.0 / np.log(mean_field("tanh", np.array(sweep), 0.05).chi1)
    for p, xi in zip(res.points, theory, strict=True):
        assert p.finite
        assert p.xi_grad_fit == pytest.approx(xi, rel=0.08), (p.sigma_w2, p.xi_grad_fit, xi)
    # vanishing (ordered) vs exploding (chaotic): the sign is the phase
    assert res.points[0].xi_grad_fit > 0 and res.points[-1].xi_grad_fit < 0
    # follow-ups sec. 2: variance across networks grows as a power of the mean (about mean^2)
    assert 1.7 < res.var_mean_exponent < 2.2


@pytest.mark.slow
def test_gradient_depth_scale_at_the_edge_of_the_ordered_range():
    # sw2 = 1.5 closes the issue's [1, 1.5] range; xi_grad = 15.8 there, so the log-norm slope is small and
    # needs width 600 and 16 networks: the per-example fit measured +0.3, +2.7, +3.5 % at seeds 0-2 with
    # jackknife errors 2.8-3.5 %; 10 % is ~3 sigma (the bar).
    res = simulate_gradients("tanh", [1.5], 0.05, width=600, depth=80, networks=16, batch_size=32,
                             backprop="shared", seed=0)
    theory = float(-1.0 / np.log(mean_field("tanh", 1.5, 0.05).chi1))
    assert res.points[0].xi_grad_fit == pytest.approx(theory, rel=0.10)


def test_checkpoint_resumes_and_seed_reproduces(tmp_path):
    kw = dict(width=20, depth=12, networks=2, batch_size=8, backprop="independent", chunk=1, seed=4)
    path = tmp_path / "grad.json"
    first = simulate_gradients("tanh", [1.0, 3.0], 0.05, checkpoint=str(path), **kw).to_dict()
    assert path.exists()
    again = simulate_gradients("tanh", [1.0, 3.0], 0.05, **kw).to_dict()
    resumed = simulate_gradients("tanh", [1.0, 3.0], 0.05, checkpoint=str(path), **kw).to_dict()
    assert first == again == resumed
    one = simulate_gradients("tanh", 3.0, 0.05, **kw).to_dict()  # single value: the CLI contract's keys
    assert {"layers", "xi_grad_fit", "xi_grad"} <= set(one) and len(one["layers"]) == 12
    assert one["layers"][0] == first["sweep"][1]["layers"][0]


def test_bad_gradient_arguments():
    with pytest.raises(ParameterError, match="backprop"):
        simulate_gradients("tanh", 1.0, 0.05, width=10, depth=3, backprop="random")
    with pytest.raises(ParameterError) as info:
        simulate_gradients("tanh", 1.0, 0.05, width=10, depth=3, dataset="imagenet-42")
    assert info.value.param == "dataset"


def test_depth_profile_fit_recovers_a_known_scale_and_says_why_an_error_is_missing():
    """m^l = exp(l / 5) times per-network noise: the fit returns 5 and, with 4 networks, a jackknife error; with
    2 networks the error is NaN and its record field says why (it said only "undefined" in JSON)."""
    import math

    import numpy as np

    from deepprop.simulate.gradients import fit_depth_profile

    layers = np.arange(12.0)
    rng = np.random.default_rng(0)
    per_net = np.exp(layers / 5.0)[None, :] * np.exp(rng.normal(0, 0.01, (4, 12)))
    mask = np.ones(12, dtype=bool)
    four = fit_depth_profile(layers, per_net, mask)
    assert four.value == pytest.approx(5.0, rel=0.02) and 0 < four.err < 0.5
    assert "xi_err_reason" not in four.as_fields("xi")
    two = fit_depth_profile(layers, per_net[:2], mask)
    assert two.value == pytest.approx(5.0, rel=0.02) and math.isnan(two.err)
    assert "at least 3 networks (got 2)" in two.as_fields("xi")["xi_err_reason"]
