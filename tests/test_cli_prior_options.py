"""One set of options describes a network on every command (``cli.common.add_prior_options``)."""

from __future__ import annotations

import json

import pytest

from deepprop.cli import common
from deepprop.cli.main import _leaves, build_parser, main

PRIOR_FLAGS = ("--activation", "--keep-rate", "--noise-mult", "--noise-add")
COMMANDS = {  # command -> (keep-rate default, has the extra noise kinds' options)
    "deepprop point": (1.0, True), "deepprop critical": (1.0, True), "deepprop phase": (1.0, True),
    "deepprop simulate forward": (1.0, True), "deepprop simulate gradients": (1.0, True),
    "deepprop simulate jacobian": (1.0, True), "deepprop advise": (1.0, True),
    "deepprop diagnose": (None, False),  # keep rate read from the model's Dropout modules unless given
    "deepprop sweep run": (None, False),  # unset flags leave the sweep's config as it is
}


def test_every_network_command_has_the_same_prior_options():
    leaves = {leaf.prog: leaf for leaf in _leaves(build_parser())}
    for prog, (keep_default, extra) in COMMANDS.items():
        actions = leaves[prog]._option_string_actions
        assert all(flag in actions for flag in PRIOR_FLAGS), prog
        assert actions["--keep-rate"].default == keep_default, prog
        assert ("--uniform-dropout" in actions) == extra, prog
        if prog != "deepprop sweep run":
            assert actions["--noise-mult"].default == 0.0 and actions["--noise-add"].default == 0.0
    others = set(leaves) - set(COMMANDS)
    assert not any("--keep-rate" in leaves[p]._option_string_actions for p in others)


def _point(capsys, *extra: str) -> dict:
    assert main(["point", "--sigma-w2", "1.5", "--sigma-b2", "0.05", *extra, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("a", [0.3, 1.0])
def test_uniform_dropout_option_acts_through_its_second_moment(capsys, a):
    """The maps see multiplicative noise only through mu2 = E[eps^2]; for eps ~ U(1 - a, 1 + a),
    mu2 = 1 + a^2 / 3 (by hand), the mu2 of dropout with keep rate 1 / mu2."""
    uniform = _point(capsys, "--uniform-dropout", str(a))
    dropout = _point(capsys, "--keep-rate", repr(1.0 / (1.0 + a * a / 3.0)))
    for key in ("q_star", "c_star", "chi1", "xi_c"):
        assert uniform[key] == pytest.approx(dropout[key], rel=1e-9)
    assert uniform["chi1"] != pytest.approx(_point(capsys)["chi1"], rel=1e-3)  # the option was not ignored


def test_extra_noise_option_is_checked_by_its_kind(capsys):
    assert main(["point", "--sigma-w2", "1.5", "--sigma-b2", "0.05", "--uniform-dropout", "1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--uniform-dropout" in err and "[0, 1]" in err


def test_prior_from_args_reads_every_option():
    parser = build_parser()
    args = parser.parse_args(["point", "--activation", "erf", "--sigma-w2", "2", "--sigma-b2", "0.1",
                              "--keep-rate", "0.9", "--noise-mult", "0.2", "--noise-add", "0.3",
                              "--uniform-dropout", "0.4"])
    prior = common.prior_from_args(args)
    assert prior.activation.name == "erf"
    assert (float(prior.sigma_w2), float(prior.sigma_b2)) == (2.0, 0.1)
    assert (float(prior.keep_rate), float(prior.noise_mult), float(prior.noise_add)) == (0.9, 0.2, 0.3)
    assert [float(k.value) for k in prior.noise.extra] == [0.4]
    # mu2 of the four independent factors: 1/rho * (1 + s^2) * (1 + a^2/3)
    assert float(prior.mu2) == pytest.approx(1 / 0.9 * 1.04 * (1 + 0.16 / 3), rel=1e-12)
    assert float(prior.add_var) == pytest.approx(0.09, rel=1e-12)
