"""One rule for critical and non-finite results, for every activation and noise.

A depth scale xi = -1/log r is critical (+inf in Python, null with reason "critical" in JSON) exactly where
its rate r lies within ``critical_tol`` of 1. Checked against closed forms (relu: chi1 = sw2 mu2 / 2, so
xi_grad = -1/log(sw2 mu2 / 2)), against the rate the engine reports beside each depth scale, and on every
activation at its own critical point. Bounded activations are never "unbounded"; a critical line exists
only where the variance map keeps a finite fixed point (follow-ups section 1: no critical initialisation
with additive noise).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from deepprop.activations import ACTIVATIONS
from deepprop.cli.main import main
from deepprop.cli.theory import MAXIMIZE_SCHEMA
from deepprop.jsonout import loads_strict
from deepprop.theory.depth_scales import critical_rule, is_bounded_activation
from deepprop.theory.meanfield import critical_sigma_w2, mean_field

TOL = 1e-3  # mean_field's default critical_tol


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    return loads_strict(capsys.readouterr().out)


@pytest.mark.parametrize("offset, critical", [(-2e-3, False), (-5e-4, True), (0.0, True), (5e-4, True),
                                              (2e-3, False)])
def test_relu_gradient_scale_against_the_closed_form(offset, critical):
    """relu without bias: chi1 = sw2 / 2 exactly (the maps do not depend on q)."""
    sw2 = 2.0 * (1.0 + offset)
    mf = mean_field("relu", sw2, 0.0)
    assert float(mf.chi1) == pytest.approx(sw2 / 2, rel=1e-12)
    if critical:
        assert math.isinf(float(mf.xi_grad)) and float(mf.xi_grad) > 0
    else:
        assert float(mf.xi_grad) == pytest.approx(-1.0 / math.log(sw2 / 2), rel=1e-9)


def test_rule_follows_each_rate_on_a_grid():
    """Over a tanh grid through the critical line, each depth scale is inf exactly where its own rate is
    within tol of 1, and -1/log(rate) elsewhere (the rate read back from the engine, chi1 or chi_c)."""
    mf = mean_field("tanh", np.linspace(1.70, 1.82, 121), 0.05, critical_tol=TOL)
    for xi, rate in ((mf.xi_grad, mf.chi1), (mf.xi_c, mf.chi_c)):
        near = np.abs(1.0 - rate) <= TOL
        assert near.any() and (~near).any()
        assert np.all(np.isinf(xi[near]))
        np.testing.assert_allclose(xi[~near], -1.0 / np.log(rate[~near]), rtol=1e-9)
    assert np.array_equal(mf.phase == "critical", np.abs(mf.chi1 - 1) <= TOL)  # phase and xi_grad agree
    wider = mean_field("tanh", 1.75, 0.05, critical_tol=0.02)
    assert math.isinf(float(wider.xi_grad)) and math.isfinite(float(mean_field("tanh", 1.75, 0.05).xi_grad))


def test_critical_rule_unit():
    xi = np.array([10.0, 2000.0, -3000.0, np.inf, np.nan, -1.0])
    out = critical_rule(xi, 1e-3)
    assert out[0] == 10.0 and math.isinf(out[1]) and math.isinf(out[2]) and math.isinf(out[3])
    assert math.isnan(out[4]) and out[5] == -1.0


WITH_CRITICAL_POINT = ["tanh", "relu", "erf", "linear", "sigmoid", "hard_tanh", "elu", "selu", "sin"]
"""Activations with a critical point at sb2 = 0.05 (0 for relu and linear); gelu, silu and softplus lose
their variance map's fixed point before chi1 reaches 1 (README), so critical_sigma_w2 is NaN there."""


@pytest.mark.parametrize("name", WITH_CRITICAL_POINT)
def test_every_activation_at_its_critical_point(name, capsys):
    sb2 = 0.0 if name in ("relu", "linear") else 0.05
    sw2 = float(np.ravel(critical_sigma_w2(name, sb2))[0])
    mf = mean_field(name, sw2, sb2)
    assert str(mf.phase) == "critical"
    assert math.isinf(float(mf.xi_grad)) and math.isinf(float(mf.xi_c)) and math.isinf(float(mf.max_depth))
    d = run_json(capsys, "point", "--activation", name, "--sigma-w2", repr(sw2), "--sigma-b2", str(sb2), "--json")
    for key in ("xi_c", "xi_grad", "max_depth"):
        assert d[key] is None and d[f"{key}_reason"] == "critical", (name, key, d)


def test_tanh_at_the_origin_every_scale_is_critical(capsys):
    """tanh, sw2 = 1, sb2 = 0: q* = 0 is marginal (dQ/dq = 1) and chi1 = chi_c = 1: all three scales."""
    d = run_json(capsys, "point", "--activation", "tanh", "--sigma-w2", "1", "--sigma-b2", "0", "--json")
    for key in ("xi_q", "xi_c", "xi_grad", "max_depth"):
        assert d[key] is None and d[f"{key}_reason"] == "critical", key


@pytest.mark.parametrize("keep", [0.9, 0.8])
def test_noise_keeps_xi_c_finite_at_the_gradient_critical_point(keep, capsys):
    """With dropout c* < 1: at chi1 = 1 only xi_grad is critical; xi_c is a number (section 3.1)."""
    sw2 = float(np.ravel(critical_sigma_w2("tanh", 0.05, keep_rate=keep))[0])
    mf = mean_field("tanh", sw2, 0.05, keep_rate=keep)
    assert math.isinf(float(mf.xi_grad))
    assert math.isfinite(float(mf.xi_c)) and float(mf.chi_c) < 1 - TOL
    assert float(mf.xi_c) == pytest.approx(-1 / math.log(float(mf.chi_c)), rel=1e-12)
    d = run_json(capsys, "point", "--activation", "tanh", "--sigma-w2", repr(sw2), "--sigma-b2", "0.05",
                 "--keep-rate", str(keep), "--json")
    assert d["xi_grad"] is None and d["xi_grad_reason"] == "critical"
    assert d["xi_c"] == pytest.approx(float(mf.xi_c)) and "xi_c_reason" not in d


@pytest.mark.parametrize("name", ["tanh", "erf", "sigmoid", "hard_tanh", "sin"])
@pytest.mark.parametrize("sw2", [1e6, 1e20])
def test_bounded_activations_are_never_unbounded(name, sw2):
    assert is_bounded_activation(ACTIVATIONS[name])
    phase = str(mean_field(name, sw2, 0.05).phase)
    # sin's q* = sw2 / 2 + sb2 at 1e6 is one the solver does not settle ("unsolved": no answer, said so)
    assert phase == "chaotic" or (name, sw2, phase) == ("sin", 1e6, "unsolved")


def test_unbounded_activations_are_labelled_unbounded():
    for name in ("relu", "gelu", "elu", "softplus", "linear", "selu", "silu"):
        assert not is_bounded_activation(ACTIVATIONS[name]), name
    assert str(mean_field("relu", 3.0, 0.05).phase) == "unbounded"
    assert str(mean_field("linear", 1.5, 0.05).phase) == "unbounded"


def test_huge_bounded_point_says_what_was_computed(capsys):
    d = run_json(capsys, "point", "--activation", "tanh", "--sigma-w2", "1e20", "--sigma-b2", "0.05", "--json")
    assert d["phase"] == "chaotic" and d["q_star"] is None and d["q_star_reason"]
    assert any("bounded" in n for n in d["notes"])


@pytest.mark.parametrize("argv", [
    ["--activation", "relu", "--sigma-b2", "0", "--noise-add", "1"],
    ["--activation", "relu", "--sigma-b2", "0.05"],
    ["--activation", "linear", "--sigma-b2", "0", "--noise-add", "0.3"],
])
def test_no_critical_point_with_additive_noise_or_relu_bias(argv, capsys):
    d = run_json(capsys, "critical", *argv, "--json")
    assert d["sigma_w2"] is None and d["sigma_w2_reason"] == "no_critical_point" and d["note"]
    assert main(["critical", *argv]) == 0
    assert capsys.readouterr().out.startswith("no critical point:")


def test_critical_and_advise_agree_on_additive_noise(capsys):
    adv = run_json(capsys, "advise", "--activation", "relu", "--noise-add", "1", "--json")
    assert adv["exact"] is False  # no exact critical initialisation: the same answer as `critical`


def test_relu_critical_lines_with_multiplicative_noise_only():
    for keep in (1.0, 0.8, 0.5):
        assert float(critical_sigma_w2("relu", 0.0, keep_rate=keep)) == pytest.approx(2 * keep, rel=1e-9)
    assert float(critical_sigma_w2("relu", 0.0, noise_mult=0.5)) == pytest.approx(2 / 1.25, rel=1e-9)


# ---- every JSON key always present -----------------------------------------------------------------------


def _keys(d: dict) -> set[str]:
    return {k for k in d if not k.endswith("_reason")}


@pytest.mark.parametrize("extra", [
    ["--activation", "tanh", "--sigma-w2", "1", "--sigma-b2", "0"],          # every scale critical
    ["--activation", "relu", "--sigma-w2", "3", "--sigma-b2", "0.05"],       # unbounded
    ["--activation", "tanh", "--sigma-w2", "1e20", "--sigma-b2", "0.05"],    # beyond the solver's range
    ["--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0"],          # exact relu critical point
])
def test_point_json_schema_is_fixed(extra, capsys):
    base = run_json(capsys, "point", "--activation", "tanh", "--sigma-w2", "2.5", "--sigma-b2", "0.05", "--json")
    d = run_json(capsys, "point", *extra, "--json")
    assert _keys(d) == _keys(base)
    for k, v in d.items():
        if v is None and not k.endswith("_reason"):
            assert d.get(f"{k}_reason"), f"{k} is null without a reason"


def test_critical_and_maximize_json_schemas_are_fixed(capsys):
    ok = run_json(capsys, "critical", "--activation", "tanh", "--sigma-b2", "0.05", "--json")
    none = run_json(capsys, "critical", "--activation", "gelu", "--sigma-b2", "0.05", "--json")
    assert _keys(ok) == _keys(none)
    # (a feasible --maximize-depth run is in test_cli_json; both print every key of MAXIMIZE_SCHEMA)
    infeasible = run_json(capsys, "critical", "--activation", "tanh", "--noise-add", "100", "--maximize-depth",
                          "--json")
    assert infeasible["feasible"] is False and _keys(infeasible) == set(MAXIMIZE_SCHEMA)
    assert infeasible["sigma_w2"] is None and infeasible["sigma_w2_reason"] == "infeasible" and infeasible["note"]
