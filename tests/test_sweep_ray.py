"""The Ray executor (one task per batched chunk, the driver writes the store) on a local Ray instance."""

from __future__ import annotations

import numpy as np
import pytest

from deepprop.sweep.config import from_mapping
from deepprop.sweep.runner import run_sweep
from deepprop.sweep.store import Store

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'deepprop[ray]')")


@pytest.mark.slow
def test_ray_executor_matches_local(tmp_path):
    grid = dict(
        dataset="synthetic",
        n_train=200,
        n_test=50,
        width=8,
        depths="2,3",
        sigma_w2="1,2",
        steps=20,
        batch_size=8,
        lr=0.05,
        dtype="float64",
        chunk_size=2,
    )
    cfg = from_mapping(grid)
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        s = run_sweep(cfg.replace(executor="ray"), tmp_path / "ray.db", progress=False)
    finally:
        ray.shutdown()
    assert s.trained == 4
    run_sweep(cfg, tmp_path / "local.db", progress=False)
    a = Store(tmp_path / "ray.db").frame().set_index("run_key").sort_index()
    b = Store(tmp_path / "local.db").frame().set_index("run_key").sort_index()
    assert list(a.index) == list(b.index)
    np.testing.assert_allclose(a["final_loss"].to_numpy(float), b["final_loss"].to_numpy(float), rtol=1e-9)
