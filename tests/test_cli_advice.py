"""`deepprop advise` / `deepprop diagnose` / --maximize-depth against closed forms and quadrature."""

from __future__ import annotations

import argparse
import json
import textwrap

import pytest

from deepprop.advice import maximize_depth_result
from deepprop.cli import common
from deepprop.cli import main as cli_main
from deepprop.cli.init import add_maximize_depth_option


def test_advise_relu_keep_rate_json(capsys):
    assert cli_main.main(["advise", "--activation", "relu", "--keep-rate", "0.8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["sigma_w2"] == 1.6 and out["sigma_b2"] == 0.0
    assert out["xi_c"] == pytest.approx(1.5538, abs=1e-4)  # follow-ups section 1: 1.554


def test_advise_text_and_bad_keep_rate(capsys):
    assert cli_main.main(["advise", "--activation", "tanh", "--depth", "50"]) == 0
    out = capsys.readouterr().out
    assert "sigma_w2  = 1.76095" in out and "expect it to train" in out
    assert cli_main.main(["advise", "--activation", "relu", "--keep-rate", "1.2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepprop advise: error: ") and "--keep-rate" in err[0]
    assert "must be in (0, 1]" in err[0]


def _model_file(path, name: str, blocks: int, block: str, tail: str):
    """A model file: class ``name``, ``blocks`` repeats of ``block`` (a list of modules), then ``tail``."""
    path.write_text(textwrap.dedent(f"""
        import torch
        from torch import nn

        class {name}(nn.Sequential):
            def __init__(self):
                torch.manual_seed(0)
                layers = []
                for _ in range({blocks}):
                    layers += {block}
                super().__init__(*layers, {tail})
    """))
    return path


def test_diagnose_file_class(tmp_path, capsys):
    f = _model_file(tmp_path / "deep.py", "Deep", 119, "[nn.Linear(300, 300), nn.Tanh()]",
                    "nn.LayerNorm(300), nn.Linear(300, 10)")
    assert cli_main.main(["diagnose", f"{f}:Deep", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # not a plain Linear stack (the LayerNorm): diagnosed from its measured profile, LayerNorm modelled
    assert out["depth"] == 120 and "238" in out["modelled"] and out["measured_only"] == []
    assert out["verdict"].startswith("expect it not to train")  # torch default tanh: sw2 = 1/3, deeply ordered
    assert out["xi_c"] < 120 / 6
    assert cli_main.main(["diagnose", f"{f}:Nope"]) == 2
    assert "deepprop diagnose: error: model: " in capsys.readouterr().err
    assert cli_main.main(["diagnose", str(tmp_path / "missing.py") + ":X"]) == 2


def test_maximize_depth_option_and_result():
    p = argparse.ArgumentParser()
    common.add_prior_options(p, sigma_b2=dict(type=float, default=None))
    add_maximize_depth_option(p)
    argv = ["--activation", "tanh", "--keep-rate", "0.9", "--sigma-b2", "0.05", "--maximize-depth"]
    args = p.parse_args(argv)
    assert args.maximize_depth
    out = maximize_depth_result(args.activation, sigma_b2=args.sigma_b2, keep_rate=args.keep_rate,
                                noise_mult=args.noise_mult, noise_add=args.noise_add)
    # the maximiser of xi_c checked against independent quadrature in test_advice
    assert out["feasible"] and not out["on_boundary"]
    assert out["sigma_w2"] == pytest.approx(1.84887, abs=1e-4)
    assert out["xi_c"] == pytest.approx(4.67635, abs=1e-4)
    assert out["phase"] != "unbounded"


def test_advice_warning_is_one_note_line_of_the_text_output(tmp_path, capsys):
    """An inexact advice (tanh with dropout: no critical point of the correlations, the search on its q* bound)
    prints its warning once, as a `note:` line of the output equal to the JSON's `warning` field; stderr
    stays empty. An exact advice (relu, no noise) has no note."""
    argv = ["advise", "--activation", "tanh", "--keep-rate", "0.95"]
    assert cli_main.main([*argv, "--json"]) == 0
    captured = capsys.readouterr()
    warning = json.loads(captured.out)["warning"]
    assert warning and captured.err == ""
    assert cli_main.main(argv) == 0
    captured = capsys.readouterr()
    notes = [line for line in captured.out.splitlines() if line.startswith("note: ")]
    assert notes == [f"note: {warning}"] and captured.err == ""
    assert cli_main.main(["advise", "--activation", "relu"]) == 0
    assert "note:" not in capsys.readouterr().out
    # a dropout MLP: diagnose's advice for it is inexact too
    model = _model_file(tmp_path / "mlp.py", "Net", 5, "[nn.Linear(20, 20), nn.Tanh(), nn.Dropout(0.05)]",
                        "nn.Linear(20, 3)")
    assert cli_main.main(["diagnose", f"{model}:Net", "--json"]) == 0
    captured = capsys.readouterr()
    warning = json.loads(captured.out)["advice"]["warning"]
    assert warning and captured.err == ""
    assert cli_main.main(["diagnose", f"{model}:Net"]) == 0
    captured = capsys.readouterr()
    assert f"note: {warning}" in captured.out.splitlines() and captured.err == ""


def test_diagnose_builds_an_unseeded_model_the_same_way_every_time(tmp_path, capsys):
    """A model file that draws its weights without a seed gets the same weights on every call (the command
    builds it under a fixed seed), so the plain and --json runs describe one network."""
    f = tmp_path / "mlp.py"
    f.write_text("from torch import nn\n\nclass MLP(nn.Sequential):\n    def __init__(self):\n"
                 "        super().__init__(nn.Linear(20, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),\n"
                 "                         nn.Linear(64, 10))\n")
    runs = []
    for _ in range(2):
        assert cli_main.main(["diagnose", f"{f}:MLP", "--json"]) == 0
        runs.append(json.loads(capsys.readouterr().out)["sigma_w2"])
    assert runs[0] == runs[1]
