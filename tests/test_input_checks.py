"""Every check of what a user gave lives in deepprop.validation: numbers, names, devices and paths.

Pinned here: the device check that returns a torch.device (``resolve_device``), the path checks (one
definition each, refusing by the option's name), and that a sweep checks its store's path once.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest
import torch

from deepprop import validation
from deepprop.errors import ParameterError
from deepprop.validation import check_input_file, check_output_dir, check_output_path, resolve_device, user_path

# ---- devices -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("given", [None, "cpu", torch.device("cpu")])
def test_resolve_device_gives_a_torch_device(given):
    assert resolve_device(given) == torch.device("cpu")


@pytest.mark.parametrize("bad", ["gpu", "mps", "auto", "", "cpu:x", 3, 1.5, ["cpu"]],
                         ids=lambda v: f"device={v!r}")  # an id "gpu" would mark the case as a GPU test
def test_resolve_device_refuses_what_is_not_cpu_or_cuda(bad):
    with pytest.raises(ParameterError) as err:
        resolve_device(bad)
    assert err.value.param == "device" and "cpu" in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_resolve_device_refuses_cuda_without_one():
    with pytest.raises(ParameterError, match="no CUDA device"):
        resolve_device("cuda")


def test_one_resolve_device_and_no_copy_in_networks():
    import deepprop.networks
    import deepprop.networks.ensemble
    import deepprop.sweep.runner

    assert "resolve_device" not in deepprop.networks.__all__
    assert not hasattr(deepprop.networks, "resolve_device")
    assert deepprop.networks.ensemble.resolve_device is validation.resolve_device
    assert deepprop.sweep.runner.resolve_device is validation.resolve_device


# ---- paths ---------------------------------------------------------------------------------------------


def test_path_checks_live_in_validation_and_writing_in_atomic():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("deepprop.paths")
    atomic = importlib.import_module("deepprop.atomic")
    assert {"atomic_write", "write_atomically"} <= set(vars(atomic))
    assert not any(hasattr(atomic, name) for name in ("user_path", "check_output_path", "check_output_dir",
                                                        "check_input_file"))


@pytest.mark.parametrize("bad, words", [("", "must not be empty"), ("a\x00b", "NUL"), (3, "must be a path")])
def test_user_path_refuses_what_is_no_path(bad, words):
    with pytest.raises(ParameterError, match=words) as err:
        user_path(bad, "out")
    assert err.value.param == "out"


def test_check_output_path_refusals(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    cases = [
        (tmp_path / "folder", {}, "is a directory"),
        (tmp_path / "no" / "g.csv", {}, "does not exist"),
        (tmp_path / "file.txt" / "g.csv", {}, "is not a directory"),
        (tmp_path / "g.txt", {"suffixes": (".csv", ".nc")}, "must end in .csv or .nc"),
    ]
    for path, kw, words in cases:
        with pytest.raises(ParameterError, match=words) as err:
            check_output_path(path, param="out", **kw)
        assert err.value.param == "out"
    assert check_output_path(tmp_path / "g.csv", suffixes=(".csv",)) == tmp_path / "g.csv"
    assert sorted(os.listdir(tmp_path)) == ["file.txt", "folder"]  # the writability probe leaves nothing


def test_check_output_dir_and_input_file(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ParameterError, match="is not a directory"):
        check_output_dir(tmp_path / "file.txt", param="out")
    with pytest.raises(ParameterError, match="does not exist"):
        check_output_dir(tmp_path / "a" / "b", param="out")
    assert check_output_dir(tmp_path / "new", param="out", create=False) == tmp_path / "new"
    assert not (tmp_path / "new").exists()
    assert check_output_dir(tmp_path / "new", param="out").is_dir()  # only the named directory is made
    with pytest.raises(ParameterError, match="no such config file") as err:
        check_input_file(tmp_path / "nope.toml", param="config", what="config file")
    assert err.value.param == "config"
    with pytest.raises(ParameterError, match="is a directory"):
        check_input_file(tmp_path, param="config")
    assert check_input_file(tmp_path / "file.txt", param="config") == tmp_path / "file.txt"


def test_a_sweep_checks_its_store_path_once(tmp_path, monkeypatch):
    import deepprop.sweep.runner as runner
    import deepprop.sweep.store as store
    from deepprop.sweep.config import from_mapping

    calls: list[Path] = []

    def counted(path, **kw):
        calls.append(Path(path))
        return check_output_path(path, **kw)

    for module in (runner, store):
        monkeypatch.setattr(module, "check_output_path", counted)
    cfg = from_mapping({"dataset": "synthetic", "n_train": 32, "n_test": 16, "width": 4, "depths": [2],
                        "sigma_w2": [1.0], "steps": 2, "batch_size": 8})
    summary = runner.run_sweep(cfg, tmp_path / "s.db", progress=False)
    assert summary.trained == 1 and (tmp_path / "s.db").stat().st_size > 0
    assert calls == [tmp_path / "s.db"]
    # a store made directly by the library checks its own path (once as well)
    calls.clear()
    with store.Store(tmp_path / "direct.db"):
        pass
    assert calls == [tmp_path / "direct.db"]
    with pytest.raises(ParameterError, match="does not exist"):
        store.Store(tmp_path / "no" / "s.db")
    # the command line too: `sweep run` checks once, and prints its header only after the checks
    from deepprop.cli.main import main

    calls.clear()
    argv = ["sweep", "run", "--dataset", "synthetic", "--n-train", "32", "--n-test", "16", "--width", "4",
            "--depths", "2", "--sigma-w2", "1", "--steps", "2", "--batch-size", "8", "--store"]
    assert main([*argv, str(tmp_path / "cli.db")]) == 0
    assert calls == [tmp_path / "cli.db"]
