"""Critical init (sw2 = 2 rho) vs He (sw2 = 2) with dropout: the networks the comparison trains.

Independent references: the engine's mean-field trajectory (q^l x sw2 / (2 rho) per layer for bias-free
ReLU, follow-ups section 1) and the closed-form xi_c of follow-ups section 1 (rho = 0.8: 1.554).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from deepprop.errors import ParameterError
from deepprop.sweep.compare import compare_config, compare_inits
from deepprop.theory.meanfield import trajectory


def test_comparison_networks_follow_mean_field_signal_growth():
    """Logit variance of the ensemble's ReLU nets with dropout at init, depth 10: flat at sw2 = 2 rho and
    (1/rho)^L larger for He, as the engine's trajectory says."""
    from deepprop.activations import get_activation
    from deepprop.data import load_dataset
    from deepprop.sweep.ensemble import _HashedNoise, forward, init_params
    from deepprop.sweep.runner import plan, settings_for

    rho, depth, nets = 0.8, 10, 12
    cfg, crit = compare_config(keep_rate=rho, depths=(depth,), seeds=tuple(range(nets)), width=256)
    assert crit == pytest.approx(2 * rho, abs=1e-12)
    ds = load_dataset("digits", n_train=200)
    x = torch.from_numpy(ds.x_train).to(torch.float64)
    q_in = float((x**2).mean())
    settings = dataclasses.replace(settings_for(cfg, depth), dtype="float64")
    measured = {}
    for sw2 in cfg.sigma_w2:
        specs = [j.spec for j in plan(cfg) if j.spec.sigma_w2 == sw2]
        w, b = init_params(specs, settings, x.shape[1], ds.n_classes)
        noise = _HashedNoise(specs, torch.device("cpu"), torch.float64)
        with torch.no_grad():
            out = forward(x.expand(len(specs), -1, -1).contiguous(), w, b, get_activation("relu"), noise)
        per_net = (out**2).mean(dim=(1, 2)).numpy()  # (nets,)
        # layer 1 has no noise: q^1 = sw2 q_in; then L noisy maps up to the logits
        q, _ = trajectory("relu", sw2, 0.0, q0=sw2 * q_in, c0=0.5, depth=depth, keep_rate=rho)
        theory = float(np.asarray(q).reshape(-1)[-1])
        se = per_net.std(ddof=1) / math.sqrt(nets)
        assert abs(per_net.mean() - theory) < 4 * se + 0.03 * theory, (sw2, per_net.mean(), theory, se)
        measured[sw2] = per_net.mean()
        # the engine itself against the closed form q^{L+1} = sw2 q_in (sw2 / (2 rho))^L
        assert theory == pytest.approx(sw2 * q_in * (sw2 / (2 * rho)) ** depth, rel=1e-9)
    ratio = measured[2.0] / measured[crit]
    assert 0.6 * (1 / rho) ** depth * 2.0 / crit < ratio < 1.6 * (1 / rho) ** depth * 2.0 / crit


def test_compare_inits_trains_shallow_nets_and_reports_theory(tmp_path):
    """At depth 2 both inits train digits far above chance with the comparison's learning rate; the table
    carries the closed-form 6 xi_c (identical for both: bias-free ReLU's c-map does not depend on q) and the
    per-layer signal growth 1 vs 1/rho. A second call resumes from the store (no retraining)."""
    kw = dict(keep_rate=0.8, depths=(2,), seeds=(0,), width=32, steps=150)
    table, _ = compare_inits(tmp_path, progress=False, **kw)
    assert set(table["init"]) == {"critical", "He"}
    # "far above chance": measured 0.89-0.93 for seeds 0, 1, 2 on this CPU; 0.5 is halfway between chance (0.1)
    # and those, so a different CPU's rounding cannot flip it.
    assert (table["train_acc"] > 0.5).all(), table
    assert (table["n_diverged"] == 0).all()
    np.testing.assert_allclose(table["max_depth"], 6 * 1.5537949, rtol=1e-5)
    growth = dict(zip(table["init"], table["q_growth"], strict=True))
    assert growth["critical"] == pytest.approx(1.0) and growth["He"] == pytest.approx(1.25)
    again, _ = compare_inits(tmp_path, progress=False, **kw)
    np.testing.assert_array_equal(again["train_acc"], table["train_acc"])


def test_keep_rate_one_is_rejected():
    with pytest.raises(ParameterError, match="keep_rate"):
        compare_config(keep_rate=1.0)
