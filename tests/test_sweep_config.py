"""Sweep configuration: grids, the paper's learning-rate rule, rejection of bad configs before training."""

from __future__ import annotations

import numpy as np
import pytest

import deepprop.cli.main as cli
from deepprop.errors import ParameterError
from deepprop.sweep.config import from_mapping, load_toml, parse_grid, preset_config, run_identity, run_key


def test_grids_are_inclusive_linspaces_and_lists():
    assert parse_grid("depths", "10:300:30", integer=True) == tuple(range(10, 301, 10))
    sw = parse_grid("sigma_w2", "1:4:31")
    np.testing.assert_allclose(sw, np.round(np.arange(31) * 0.1 + 1, 12))
    assert parse_grid("sigma_w2", "1,2.5") == (1.0, 2.5)
    assert parse_grid("seeds", [0, 1, 1], integer=True) == (0, 1)


def test_paper_learning_rate_rule():
    cfg = from_mapping({"lr": "paper", "depths": "10,199,200,300"})
    assert [cfg.lr_for(d) for d in cfg.depths] == [1e-3, 1e-3, 1e-4, 1e-4]
    assert from_mapping({"optimizer": "rmsprop"}).lr_for(10) == 1e-5
    assert from_mapping({"lr": 0.02}).lr_for(300) == 0.02


def test_presets_match_the_paper():
    full = preset_config("fig5a", full=True)
    assert (full.activation, full.sigma_b2, full.optimizer, full.steps) == ("tanh", 0.05, "sgd", 200)
    assert (min(full.depths), max(full.depths), len(full.depths)) == (10, 300, 30)
    assert (min(full.sigma_w2), max(full.sigma_w2)) == (1.0, 4.0)
    assert preset_config("fig6", full=True).keep_rates == (0.99, 0.98, 0.94)


def test_run_identity_is_canonical():
    cfg = from_mapping({})
    assert run_key(run_identity(cfg, 10, 0.1 + 0.2, 1.0, 0)) == run_key(run_identity(cfg, 10, 0.3, 1.0, 0))
    assert run_key(run_identity(cfg, 10, 0.3, 1.0, 0)) != run_key(run_identity(cfg, 10, 0.3, 1.0, 1))


@pytest.mark.parametrize(
    ("values", "param"),
    [
        ({"widht": 10}, "widht"),
        ({"width": -3}, "width"),
        ({"depths": []}, "depths"),
        ({"sigma_w2": "1:4:0"}, "sigma_w2"),
        ({"keep_rate": 1.5}, "keep_rates"),
        ({"lr": "fast"}, "lr"),
    ],
)
def test_bad_config_is_rejected_naming_the_key(values, param):
    with pytest.raises(ParameterError) as err:
        from_mapping(values)
    assert err.value.param == param


def test_toml_unknown_key_rejected(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text(
        '[sweep]\ndataset = "synthetic"\nwidth = 8\ndepths = [2, 3]\nsigma_w2 = "1:2:3"\nbogus = 1\n'
    )
    with pytest.raises(ParameterError, match="unknown config key") as err:
        load_toml(p)
    assert err.value.param == "bogus"
    p.write_text('dataset = "synthetic"\nwidth = 8\ndepths = [2, 3]\nsigma_w2 = "1:2:3"\nlr = 0.01\n')
    cfg = load_toml(p)
    assert cfg.depths == (2, 3) and cfg.sigma_w2 == (1.0, 1.5, 2.0) and cfg.lr == 0.01


@pytest.fixture
def sweep_cli(monkeypatch):
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("sweep",))
    return cli.main


def test_cli_rejects_before_training(sweep_cli, tmp_path, capsys):
    store = tmp_path / "s.db"
    assert sweep_cli(["sweep", "run", "--store", str(store), "--width", "-3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["deepprop sweep run: error: argument --width: expected an integer >= 1, got '-3'"]
    assert sweep_cli(["sweep", "run", "--store", str(store), "--depths", "5:10:0"]) == 2
    assert "--depths: is an empty grid" in capsys.readouterr().err
    toml = tmp_path / "bad.toml"
    toml.write_text("width = 8\nlearnin_rate = 0.1\n")
    assert sweep_cli(["sweep", "run", str(toml), "--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert f"{toml}: key 'learnin_rate': unknown config key" in err and err.count("\n") == 1  # names file and key
    assert not store.exists()  # nothing was trained or stored


def test_cli_run_status_export(sweep_cli, tmp_path, capsys):
    store = tmp_path / "s.db"
    args = [
        "sweep",
        "run",
        "--store",
        str(store),
        "--dataset",
        "synthetic",
        "--width",
        "8",
        "--depths",
        "2,3",
        "--sigma-w2",
        "1,2",
        "--steps",
        "5",
        "--batch-size",
        "8",
        "--lr",
        "0.01",
        "--quiet",
    ]
    assert sweep_cli(args) == 0
    assert "4 networks trained" in capsys.readouterr().out
    assert sweep_cli(["sweep", "status", str(store)]) == 0
    assert capsys.readouterr().out.startswith("4/4 done")
    out = tmp_path / "runs.parquet"
    assert sweep_cli(["sweep", "export", str(store), "--out", str(out)]) == 0
    import pandas as pd

    df = pd.read_parquet(out)
    assert len(df) == 4
    for col in (
        "depth",
        "sigma_w2",
        "sigma_b2",
        "keep_rate",
        "seed",
        "train_accuracy",
        "test_accuracy",
        "final_loss",
        "diverged",
    ):
        assert col in df.columns
    assert sweep_cli(["sweep", "status", str(tmp_path / "none.db")]) == 2
