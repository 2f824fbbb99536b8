"""`deepprop simulate` command line: JSON contract, theory beside measurement, one-line errors."""

import json

import numpy as np
import pytest

import deepprop.cli.main as cli
from deepprop.theory.meanfield import trajectory


@pytest.fixture
def run(monkeypatch, capsys):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("simulate",))

    def _run(*argv):
        rc = cli.main(list(argv))
        out = capsys.readouterr()
        return rc, out.out, out.err

    return _run


def test_forward_json_contract_and_theory(run):
    rc, out, _ = run("simulate", "forward", "--activation", "tanh", "--sigma-w2", "2.5", "--sigma-b2", "0.05",
                     "--width", "300", "--depth", "5", "--q0", "0.8", "--c0", "0.6", "--networks", "4",
                     "--seed", "1", "--json")
    assert rc == 0
    d = json.loads(out)
    assert {"layers", "xi_q_fit", "xi_c_fit", "xi_q", "xi_c"} <= set(d)
    q_th, c_th = trajectory("tanh", 2.5, 0.05, q0=0.8, c0=0.6, depth=5)
    np.testing.assert_allclose([r["q_theory"] for r in d["layers"]], np.ravel(q_th))
    np.testing.assert_allclose([r["c_theory"] for r in d["layers"]], np.ravel(c_th))
    q = np.array([r["q"] for r in d["layers"]])
    assert q[0] == pytest.approx(0.8, rel=1e-5) and np.abs(q[1:] / np.ravel(q_th)[1:] - 1).max() < 0.06
    rc2, out2, _ = run("simulate", "forward", "--sigma-w2", "2.5", "--sigma-b2", "0.05", "--width", "300",
                       "--depth", "5", "--networks", "4", "--seed", "1", "--q0", "0.8", "--json")
    assert json.loads(out2)["layers"] == d["layers"]  # same seed, same numbers
    rc3, out3, _ = run("simulate", "forward", "--sigma-w2", "2.5", "--sigma-b2", "0.05", "--width", "30",
                       "--depth", "2", "--networks", "2", "--json")
    assert json.loads(out3)["layers"][0]["q"] == pytest.approx(1.0, rel=1e-5)  # default q0 = 1, the library's


def test_gradients_and_jacobian_json(run):
    rc, out, _ = run("simulate", "gradients", "--sigma-w2", "3.0", "--sigma-b2", "0.05", "--width", "30",
                     "--depth", "10", "--batch-size", "16", "--backprop", "independent", "--json")
    d = json.loads(out)
    assert rc == 0 and {"layers", "xi_grad_fit", "xi_grad"} <= set(d)
    assert [r["layer"] for r in d["layers"]] == list(range(1, 11))
    assert all(r["grad_sq_norm"] > 0 for r in d["layers"])
    rc, out, _ = run("simulate", "jacobian", "--activation", "linear", "--sigma-w2", "0.5", "2.0",
                     "--sigma-b2", "0", "--width", "40", "--depth", "3", "--input-q", "1",
                     "--weights", "orthogonal", "--json")
    d = json.loads(out)
    assert rc == 0 and len(d["points"]) == 2
    # orthogonal linear: all singular values sw2^{L/2}; I grows with sw2
    assert d["points"][1]["singular_value_quantiles"]["q50"] == pytest.approx(2.0**1.5)
    assert d["mi_peak_sigma_w2"] == 2.0


@pytest.mark.parametrize(
    "extra, option",
    [(["--width", "0"], "--width"), (["--depth", "0"], "--depth"), (["--c0", "1.5"], "--c0"),
     (["--q0", "0"], "--q0"), (["--q0", "-1"], "--q0"), (["--keep-rate", "0"], "--keep-rate"),
     (["--keep-rate", "1.2"], "--keep-rate"), (["--networks", "0"], "--networks"),
     (["--width", "abc"], "--width"), (["--weights", "uniform"], "--weights")],
)
def test_bad_input_is_one_line_exit_2(run, extra, option):
    rc, out, err = run("simulate", "forward", "--sigma-w2", "1.0", "--sigma-b2", "0.05", *extra)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and option in err and "Traceback" not in err
