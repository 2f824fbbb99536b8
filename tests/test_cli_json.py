"""Strict JSON from every command with --json: no NaN/Infinity tokens, non-finite values null with a reason."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from deepprop.cli.main import main
from deepprop.jsonout import loads_strict, strict, to_json
from deepprop.theory.meanfield import critical_sigma_w2, mean_field

SMALL = ["--dataset", "synthetic", "--n-train", "64", "--n-test", "16", "--width", "4", "--depths", "2,3",
         "--sigma-w2", "1,2", "--steps", "3", "--batch-size", "8", "--quiet"]


def run_json(capsys, *argv):
    assert main(list(argv)) == 0
    out = capsys.readouterr().out
    return loads_strict(out)  # raises on NaN / Infinity / -Infinity


def test_serializer_nulls_non_finite_with_reasons():
    data = {"a": math.inf, "b": -math.inf, "c": math.nan, "d": 1.5, "e": [1.0, math.nan], "f": np.float32(2.0),
            "g": np.array([1.0, np.inf]), "h": {"x": np.nan}, "i": None, "j": (1, 2)}
    out = strict(data)
    assert out == {"a": None, "a_reason": "infinite", "b": None, "b_reason": "negative_infinite",
                   "c": None, "c_reason": "undefined", "d": 1.5, "e": [1.0, None], "e_reason": "non_finite_elements",
                   "f": 2.0, "g": [1.0, None], "g_reason": "non_finite_elements",
                   "h": {"x": None, "x_reason": "undefined"}, "i": None, "j": [1, 2]}
    assert loads_strict(to_json(data)) == out
    # a reason means "no valid value": a number given one is written as null (never a number beside it)
    assert strict({"xi_c": 1e8}, reasons={"xi_c": "critical"}) == {"xi_c": None, "xi_c_reason": "critical"}
    bad = {"fit": -55.3, "fit_reason": "the residual grows"}
    assert strict(bad) == {"fit": None, "fit_reason": "the residual grows"}
    assert strict({"fit": 3.0, "fit_reason": None}) == {"fit": 3.0, "fit_reason": None}
    with pytest.raises(ValueError):
        loads_strict('{"x": NaN}')
    with pytest.raises(TypeError):
        strict({"x": object()})


def test_point_json_at_criticality_says_so(capsys):
    sw2 = float(np.ravel(critical_sigma_w2("tanh", 0.05))[0])
    d = run_json(capsys, "point", "--activation", "tanh", "--sigma-w2", f"{sw2:.7f}", "--sigma-b2", "0.05", "--json")
    assert d["phase"] == "critical" and d["critical_within_tolerance"] is True
    assert d["xi_c"] is None and d["xi_c_reason"] == "critical" and d["max_depth_reason"] == "critical"
    assert d["xi_grad"] is None and d["xi_grad_reason"] == "critical"
    assert d["xi_q"] is not None and d["xi_q"] > 0  # q* = 1.1 is not marginal: xi_q stays a number
    assert d["critical_tol"] == 1e-3
    far = run_json(capsys, "point", "--activation", "tanh", "--sigma-w2", "2.5", "--sigma-b2", "0.05", "--json")
    assert far["critical_within_tolerance"] is False and "xi_c_reason" not in far
    assert far["xi_c"] == pytest.approx(float(mean_field("tanh", 2.5, 0.05).xi_c), rel=1e-12)


def test_point_json_unbounded_and_exact_critical(capsys):
    d = run_json(capsys, "point", "--activation", "relu", "--sigma-w2", "3", "--sigma-b2", "0.05", "--json")
    assert d["phase"] == "unbounded" and d["q_star"] is None and d["q_star_reason"] == "undefined"
    d = run_json(capsys, "point", "--activation", "relu", "--sigma-w2", "2", "--sigma-b2", "0", "--json")
    ref = mean_field("relu", 2.0, 0.0)
    assert math.isinf(float(ref.xi_c))  # exact relu critical point: xi_c is infinite in Python ...
    assert d["xi_c"] is None and d["xi_c_reason"] == "critical"  # ... null + reason in JSON


def test_advise_json_infinite_depth_is_null_with_reason(capsys):
    d = run_json(capsys, "advise", "--activation", "tanh", "--json")
    assert d["xi_c"] is None and d["xi_c_reason"] == "critical"
    assert d["max_depth"] is None and d["max_depth_reason"] == "critical"
    assert d["sigma_w2"] == pytest.approx(1.76095, abs=1e-5)
    d = run_json(capsys, "advise", "--activation", "tanh", "--noise-add", "0.1", "--json")
    assert math.isfinite(d["xi_c"]) and "xi_c_reason" not in d


def test_critical_json_variants(capsys):
    d = run_json(capsys, "critical", "--activation", "tanh", "--sigma-b2", "0.05", "--json")
    assert d["sigma_w2"] == pytest.approx(1.7610, abs=5e-5)
    d = run_json(capsys, "critical", "--activation", "gelu", "--sigma-b2", "0.05", "--json")
    assert d["sigma_w2"] is None and d["sigma_w2_reason"] == "no_critical_point" and d["note"]
    d = run_json(capsys, "critical", "--activation", "tanh", "--keep-rate", "0.9", "--sigma-b2", "0.05",
                 "--maximize-depth", "--json")
    assert d["feasible"] is True and d["sigma_b2"] == 0.05
    from deepprop.cli.theory import MAXIMIZE_SCHEMA

    assert {k for k in d if not k.endswith("_reason")} == set(MAXIMIZE_SCHEMA)  # the infeasible run's keys too


def test_sweep_status_fit_export_json(tmp_path, capsys):
    store = tmp_path / "s.db"
    assert main(["sweep", "run", "--store", str(store), *SMALL]) == 0
    capsys.readouterr()
    st = run_json(capsys, "sweep", "status", str(store), "--json")
    assert st["done"] == st["total"] == st["rows"] == 4 and st["config"]["dataset"] == "synthetic"
    fit = run_json(capsys, "sweep", "fit", str(store), "--json", "--threshold", "0.3")
    assert fit["threshold"] == 0.3 and fit["cells"] == 4 and len(fit["fits"]) == 3
    assert {"name", "constants", "fraction_correct", "n_cells"} <= set(fit["fits"][0])
    ex = run_json(capsys, "sweep", "export", str(store), "--out", str(tmp_path / "rows.csv"), "--json")
    assert ex["rows"] == 4 and (tmp_path / "rows.csv").is_file()


def test_json_output_is_the_same_serializer_everywhere():
    """No command module formats JSON itself: every --json goes through deepprop.jsonout."""
    from pathlib import Path

    import deepprop.cli as cli

    for path in Path(cli.__file__).parent.glob("*.py"):
        text = path.read_text()
        assert "json.dump" not in text, path.name
        assert "allow_nan" not in text or path.name == "common.py", path.name


def test_json_is_ascii_parseable_by_plain_json(capsys):
    d = run_json(capsys, "advise", "--activation", "relu", "--keep-rate", "0.8", "--json")
    assert json.loads(json.dumps(d)) == d
