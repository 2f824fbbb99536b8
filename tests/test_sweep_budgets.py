"""Several budgets in one sweep: each network is trained once and scored after every budget, and each row
equals the row of a sweep run with that single budget (a run of b steps is the prefix of a longer run)."""

from __future__ import annotations

import numpy as np
import pytest

from deepprop.errors import ParameterError
from deepprop.sweep.config import from_mapping
from deepprop.sweep.runner import plan, run_sweep
from deepprop.sweep.store import Store

GRID = dict(
    dataset="synthetic",
    n_train=200,
    n_test=80,
    width=16,
    depths="2,6",
    # relu at sigma_w2 = 60 (lr 0.3) diverges part-way: its rows must switch from finite to diverged between budgets
    sigma_w2="0.8,1.8,60",
    seeds="0,1",
    batch_size=16,
    lr=0.3,
    dtype="float64",
    activation="relu",
)
BUDGETS = [3, 17, 40]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frame(path):
    with Store(path) as st:
        return st.frame().set_index("run_key").sort_index()


def test_budget_rows_equal_single_budget_sweeps(tmp_path):
    multi = tmp_path / "multi.db"
    summary = run_sweep(from_mapping({**GRID, "steps": BUDGETS}), multi, progress=False)
    cfg = from_mapping({**GRID, "steps": BUDGETS})
    assert summary.trained == cfg.n_networks == cfg.n_trainings * len(BUDGETS)
    # one training per network: the work done is that of the longest budget only
    assert summary.network_steps == cfg.n_trainings * max(BUDGETS)
    got = _frame(multi)
    singles = []
    for b in BUDGETS:
        path = tmp_path / f"single{b}.db"
        run_sweep(from_mapping({**GRID, "steps": b}), path, progress=False)
        singles.append(_frame(path))
    want = __import__("pandas").concat(singles).sort_index()
    assert list(got.index) == list(want.index)
    for col in ("train_accuracy", "test_accuracy", "final_loss"):
        np.testing.assert_allclose(got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-10, atol=1e-12,
                                   equal_nan=True)
    for col in ("diverged", "diverged_step", "steps"):
        assert got[col].fillna(-9).tolist() == want[col].fillna(-9).tolist(), col
    # the sigma_w2 = 60 networks must really test the divergence bookkeeping: finite early, diverged late
    wild = got[got["sigma_w2"] == 60]
    assert wild[wild["steps"] == BUDGETS[0]]["diverged"].sum() < wild[wild["steps"] == BUDGETS[-1]]["diverged"].sum()


def test_resume_trains_only_missing_budgets(tmp_path):
    path = tmp_path / "s.db"
    run_sweep(from_mapping({**GRID, "steps": 17}), path, progress=False)
    summary = run_sweep(from_mapping({**GRID, "steps": BUDGETS}), path, progress=False)
    cfg = from_mapping({**GRID, "steps": BUDGETS})
    assert summary.already_done == cfg.n_trainings
    assert summary.trained == cfg.n_trainings * (len(BUDGETS) - 1)


def test_budget_parsing():
    assert from_mapping({"steps": "304,45,45"}).steps == (45, 304)
    assert from_mapping({"steps": [200]}).steps == 200
    cfg = from_mapping({**GRID, "steps": [45, 304]})
    assert {j.budget for j in plan(cfg)} == {45, 304}
    assert len({j.spec for j in plan(cfg)}) == cfg.n_trainings
    for bad in ("45,,304", [0, 10], [1.5], "a,b", []):
        with pytest.raises(ParameterError, match="steps"):
            from_mapping({"steps": bad})
