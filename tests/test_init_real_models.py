"""init_ beyond stacks of Linear layers: residual branch scaling, noise-aware layers, the forward check,
and the `deepprop profile` command."""

from __future__ import annotations

import json
import math
import textwrap

import pytest
import torch
from torch import nn

import deepprop
from deepprop.cli import main as cli_main
from deepprop.errors import ParameterError
from deepprop.integrations.zoo import NormMLP, ResidualMLP


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def stream_q(model: nn.Module, blocks: nn.Module, x: torch.Tensor) -> list[float]:
    """Mean squared activation of the input of the first block and of every block's output (hooks, here)."""
    seen: list[float] = []
    hooks = [blocks[0].register_forward_pre_hook(lambda m, i: seen.append(float(i[0].double().square().mean())))]
    hooks += [b.register_forward_hook(lambda m, i, o: seen.append(float(o.double().square().mean()))) for b in blocks]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return seen


class TwoLayerBlock(nn.Module):
    """x + W2 relu(W1 x): the branch ends in a weight layer, so its output has zero mean."""

    def __init__(self, width: int):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, width), nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc2(torch.relu(self.fc1(x)))


def test_zero_mean_branches_get_one_over_sqrt_blocks_and_the_stream_stays_in_its_band():
    torch.manual_seed(0)
    blocks = nn.Sequential(*[TwoLayerBlock(256) for _ in range(16)])
    model = nn.Sequential(nn.Linear(32, 256), blocks, nn.Linear(256, 10))
    x = torch.randn(64, 32)
    report = deepprop.init_(model, example_input=x, generator=torch.Generator().manual_seed(1))
    assert report.residual["blocks"] == 16 and report.residual["scale"] == pytest.approx(1 / math.sqrt(16))
    assert [d["branch_scale"] for d in report.layers if d["name"].endswith("fc2")] == [0.25] * 16
    # fc1 reads the stream (sw2 = 1), fc2 a ReLU (sw2 = 2): the branch keeps q, times alpha^2 = 1/16, and adds
    # nothing else (its output has zero mean), so q grows by (1 + 1/16)^16 over the 16 blocks
    # (the theory reads each layer's drawn weights: fan_in mean(W^2) of 256 x 256 entries is within ~0.5 %)
    assert report.residual["stream_q_growth"] == pytest.approx((1 + 1 / 16) ** 16, rel=0.01)
    q = stream_q(model, blocks, torch.randn(256, 32, generator=torch.Generator().manual_seed(2)))
    assert q[-1] / q[0] == pytest.approx((1 + 1 / 16) ** 16, rel=0.15)  # Monte Carlo at width 256


def test_branches_with_a_mean_get_a_smaller_scale_found_on_the_theory():
    torch.manual_seed(0)
    model = ResidualMLP(32, 256, 20)
    x = torch.randn(64, 32)
    report = deepprop.init_(model, example_input=x, generator=torch.Generator().manual_seed(1))
    scale = report.residual["scale"]
    assert scale < 1 / math.sqrt(20) and "bisection" in report.residual["rule"]
    assert report.residual["stream_q_growth"] == pytest.approx(math.e, rel=1e-3)
    q = stream_q(model, model.blocks, torch.randn(512, 32, generator=torch.Generator().manual_seed(2)))
    assert q[-1] / q[0] == pytest.approx(math.e, rel=0.15)
    assert q[-1] / q[0] < 3.3  # the default 1/sqrt(B) would have let the ReLU means pile up far beyond e


def test_noise_aware_layers_and_the_first_layer():
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Dropout(0.3), nn.Linear(64, 64), nn.ReLU(),
                          nn.Dropout(0.3), nn.Linear(64, 10))
    report = deepprop.init_(model, generator=torch.Generator().manual_seed(0))
    sw2 = [d["sigma_w2"] for d in report.layers]
    keep = [d["keep_rate"] for d in report.layers]
    assert keep == pytest.approx([1.0, 0.7, 0.7])  # the keep rate of the Dropout on each layer's input
    assert sw2 == pytest.approx([2.0, 1.4, 1.4])  # 2 rho: critical with multiplicative noise (Pretorius et al.)
    assert report.sigma_w2 == pytest.approx(1.4) and json.dumps(report.to_dict())


def test_an_exploding_initialisation_is_refused_and_the_model_left_as_it_was():
    torch.manual_seed(1)
    model = nn.Sequential(*[m for _ in range(20) for m in (nn.Linear(64, 64), nn.ReLU())])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ParameterError, match=r"forward signal grows by 10\^.*left as it was"):
        deepprop.init_(model, sigma_w2=8.0)  # q x 4 per layer: 4^20 ~ 10^12
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_layernorm_mlp_keeps_its_norms_and_checks_the_forward_signal():
    torch.manual_seed(2)
    model = NormMLP(32, 64, 8, norm="layer", activation=nn.Tanh)
    with torch.no_grad():
        model[2].weight.fill_(0.7)
    report = deepprop.init_(model)
    assert float(model[2].weight.detach().mean()) == pytest.approx(0.7)
    assert ("2", "LayerNorm") in report.untouched and report.check["ok"]
    assert all(d["sigma_w2"] == pytest.approx(1.7609, abs=1e-3) for d in report.layers)  # tanh critical


def test_first_conv_on_few_channels_is_gaussian_and_the_rest_delta_orthogonal():
    from deepprop.integrations.zoo import VanillaCNN

    model = VanillaCNN(3, 32, 3)
    report = deepprop.init_(model, example_input=torch.randn(2, 3, 8, 8))
    schemes = [d["scheme"] for d in report.layers]
    assert schemes == ["gaussian", "delta-orthogonal", "delta-orthogonal", "gaussian"]
    assert any("reads 3 channels" in n for n in report.notes)


# ------------------------------------------------------------------------------------- the command


def test_profile_command_json_plot_and_errors(tmp_path, capsys):
    f = tmp_path / "net.py"
    f.write_text(textwrap.dedent("""
        import torch
        from torch import nn

        class Net(nn.Sequential):
            def __init__(self):
                torch.manual_seed(0)
                super().__init__(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1),
                                 nn.Tanh(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))
    """))
    png = tmp_path / "profile.png"
    assert cli_main.main(["profile", f"{f}:Net", "--input-shape", "3,8,8", "--inits", "2", "--json", "--quiet",
                          "--plot", str(png)]) == 0
    out = json.loads(capsys.readouterr().out)
    cols = ["name", "kind", "q", "q_err", "q_theory", "c", "c_err", "c_theory", "chi", "chi_err", "chi_theory",
            "theory"]
    assert [r["name"] for r in out["rows"]] == ["input", "0", "1", "2", "3", "4", "5", "6"]
    assert all(list(r)[:12] == cols for r in out["rows"])
    assert {"verdict", "trainable", "reasons", "measured_only"} <= set(out["verdict"])
    assert png.stat().st_size > 10_000
    assert cli_main.main(["profile", f"{f}:Net", "--input-shape", "3,8", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("deepprop profile: error: --input-shape: the model does not run on it")
    assert cli_main.main(["profile", f"{f}:Net"]) == 2  # --input-shape is required
    assert cli_main.main(["profile", f"{f}:Net", "--input-shape", "3,x,8"]) == 2


@pytest.mark.gpu
def test_profile_and_init_on_a_cuda_model():
    from deepprop.integrations.zoo import VanillaCNN

    model = VanillaCNN(3, 32, 4, activation=nn.Tanh).cuda()
    x = torch.randn(2, 3, 8, 8, device="cuda")
    deepprop.init_(model, example_input=x)
    p = deepprop.profile(model, x, inits=2, pairs=2)
    rows = [r for r in p.rows if r["theory"] == "exact" and r["kind"] == "conv"]
    assert rows and all(abs(r["q"] / r["q_theory"] - 1) < 0.2 for r in rows)
    with pytest.raises(ParameterError, match="example_input"):
        deepprop.profile(model, x.cpu())
