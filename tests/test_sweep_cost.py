"""Cost of sweeps: exact work (network-steps, FLOPs counted by torch's FLOP counter) and the time estimate's
arithmetic on a controlled table."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from deepprop.sweep import cost, cost_table
from deepprop.sweep.config import from_mapping

TABLE = [
    {"width": w, "depth": d, "optimizer": "sgd", "keep_rate": 0.9, "activation": "tanh", "engine_gflops": g,
     "bmm_square_gflops": 2 * g, "engine_fraction": 0.5, "bmm_gflops": 2 * g}
    for w, d, g in [(64, 10, 40.0), (64, 100, 60.0), (256, 10, 100.0), (256, 100, 120.0)]
] + [{"width": 128, "depth": 10, "optimizer": "rmsprop", "keep_rate": 1.0, "activation": "relu",
      "engine_gflops": 10.0, "bmm_square_gflops": 20.0, "engine_fraction": 0.5, "bmm_gflops": 20.0}]


@pytest.fixture
def table(monkeypatch):
    monkeypatch.setattr(cost_table, "ROWS", TABLE)
    monkeypatch.setattr(cost_table, "MACHINE", "test machine")


def _plain_model(depth, width, n_in, n_out):
    layers, fan_in = [], n_in
    for _ in range(depth):
        layers += [torch.nn.Linear(fan_in, width), torch.nn.Tanh()]
        fan_in = width
    return torch.nn.Sequential(*layers, torch.nn.Linear(width, n_out))


def _forward_flops(depth, width, n_in, n_out, examples):
    """torch's FLOP counter on a forward pass of a plain network."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        _plain_model(depth, width, n_in, n_out)(torch.randn(examples, n_in))
    return counter.get_total_flops()


def _training_flops(depth, width, n_in, n_out, batch):
    """torch's FLOP counter on a training step (forward and backward) of a plain network."""
    model = _plain_model(depth, width, n_in, n_out)
    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.cross_entropy(model(torch.randn(batch, n_in)), torch.randint(0, n_out, (batch,))).backward()
    return counter.get_total_flops()


def test_interpolation_in_log_width_and_log_depth(table):
    assert cost.engine_gflops(64, 10, keep_rate=0.9)[0] == pytest.approx(40.0)
    assert cost.engine_gflops(128, 10, keep_rate=0.9)[0] == pytest.approx(70.0)  # geometric middle of 64, 256
    assert cost.engine_gflops(64, 31, keep_rate=0.9)[0] == pytest.approx(40 + 20 * math.log(3.1) / math.log(10))
    assert cost.engine_gflops(1000, 1000, keep_rate=0.9)[0] == pytest.approx(120.0)  # held beyond the table
    rate, basis = cost.engine_gflops(64, 10, keep_rate=0.9, bmm_gflops=300.0)
    assert rate == pytest.approx(150.0) and "0.50 x bmm 300" in basis
    # no tanh row for RMSProp: the measured relu row, and the note says so
    rate, basis = cost.engine_gflops(128, 10, optimizer="rmsprop", activation="tanh")
    assert rate == pytest.approx(10.0) and "relu measured in place of tanh" in basis


def test_sweep_cost_work_is_exact_and_time_is_flops_over_rate(table):
    cfg = from_mapping(dict(width=64, depths="10,100", sigma_w2="1,2,3", keep_rates="0.9,1.0", seeds="0,1",
                            steps=[45, 300], eval_train=500, eval_test=400, batch_size=32))
    c = cost.sweep_cost(cfg, n_in=20, n_out=5, n_train=1000, n_test=300)
    assert c.trainings == 2 * 3 * 2 * 2 and c.network_steps == c.trainings * 300
    per_depth = c.trainings // 2
    train = {d: _training_flops(d, 64, 20, 5, 32) for d in (10, 100)}
    evaluation = {d: _forward_flops(d, 64, 20, 5, 500 + 300) * 2 for d in (10, 100)}  # 2 budgets
    assert c.evaluation_flops == pytest.approx(per_depth * sum(evaluation.values()))
    assert c.flops == pytest.approx(per_depth * sum(300 * train[d] + evaluation[d] for d in (10, 100)))
    seconds = per_depth * sum((300 * train[d] + evaluation[d]) / (r * 1e9) for d, r in ((10, 40.0), (100, 60.0)))
    assert c.seconds == pytest.approx(seconds)
    assert "test machine" in c.text() and "network-steps" in c.text()


def test_network_steps_per_second_is_rate_over_step_flops(table):
    rate = cost.network_steps_per_second(256, 10, batch_size=16, n_in=20, n_out=5, keep_rate=0.9)
    assert rate == pytest.approx(100.0e9 / _training_flops(10, 256, 20, 5, 16))


def test_shipped_table_is_complete():
    assert cost_table.ROWS, "the table holds measured rows"
    for row in cost_table.ROWS:
        assert {"width", "depth", "optimizer", "keep_rate", "activation", "engine_gflops", "bmm_square_gflops",
                "engine_fraction", "threads", "date"} <= set(row)
        assert 0 < row["engine_fraction"] < 1.5 and row["engine_gflops"] > 0


def test_measured_bmm_rate_is_positive():
    assert 0 < cost.measure_bmm_gflops(32, networks=2, batch_size=16, seconds=0.05) < 1e6
