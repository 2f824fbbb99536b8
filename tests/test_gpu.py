"""CUDA runs agree with the CPU (skipped cleanly where there is no GPU)."""

import numpy as np
import pytest
import torch

from deepprop.theory.meanfield import mean_field, trajectory

pytestmark = pytest.mark.gpu


def test_engine_grid_on_cuda_matches_cpu():
    sw2 = np.linspace(1.0, 4.0, 31)[:, None]
    sb2 = np.linspace(0.0, 0.3, 11)
    cpu = mean_field("tanh", sw2, sb2, keep_rate=0.98)
    gpu = mean_field("tanh", sw2, sb2, keep_rate=0.98, device="cuda")
    for name in ("q_star", "c_star", "chi1", "xi_c", "xi_q"):
        np.testing.assert_allclose(getattr(gpu, name), getattr(cpu, name), rtol=1e-10)
    assert (gpu.phase == cpu.phase).all()


def test_trajectory_on_cuda_matches_cpu():
    q_cpu, c_cpu = trajectory("hard_tanh", 2.0, 0.05, q0=0.8, c0=0.6, depth=10)
    q_gpu, c_gpu = trajectory("hard_tanh", 2.0, 0.05, q0=0.8, c0=0.6, depth=10, device="cuda")
    np.testing.assert_allclose(q_gpu, q_cpu, rtol=1e-10)
    np.testing.assert_allclose(c_gpu, c_cpu, rtol=1e-10)
    assert torch.cuda.is_available()
