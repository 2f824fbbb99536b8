"""init_ / diagnose on real torch models: parsing, empirical variances, noise bookkeeping, engine."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import deepprop
from deepprop.errors import ParameterError
from deepprop.integrations.model_structure import activation_from_module, linear_variances, parse_model
from deepprop.integrations.pytorch import diagnose, init_


def mlp(width: int, depth: int, act: type[nn.Module] = nn.Tanh, p: float | None = None, bias: bool = True,
        extra: nn.Module | None = None) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Flatten()]
    for i in range(depth):
        layers.append(nn.Linear(width, width, bias=bias))
        layers.append(act())
        if p is not None:
            layers.append(nn.Dropout(p))
        if extra is not None and i == 1:
            layers.append(extra)
    layers.append(nn.Linear(width, 10, bias=bias))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- parsing and noise bookkeeping

def test_parse_reads_depth_activation_and_keep_rate_one_minus_p():
    s = parse_model(mlp(20, 4, nn.ReLU, p=0.2))
    assert s.depth == 5
    assert s.activation.name == "relu"
    assert s.keep_rate == pytest.approx(0.8, abs=1e-15)  # nn.Dropout(p) drops with prob p
    assert [k for _, k in s.keep_rates] == pytest.approx([0.8] * 4)
    assert s.unrecognised == []


@pytest.mark.parametrize(
    "module, name",
    [(nn.Tanh(), "tanh"), (nn.ReLU(), "relu"), (nn.GELU(), "gelu"), (nn.SiLU(), "silu"),
     (nn.ELU(), "elu"), (nn.SELU(), "selu"), (nn.Sigmoid(), "sigmoid"),
     (nn.Hardtanh(), "hard_tanh"), (nn.Softplus(), "softplus")],
)
def test_torch_activation_modules_map_to_engine_names(module, name):
    assert activation_from_module(module).name == name


@pytest.mark.parametrize("module", [nn.LeakyReLU(0.1), nn.ELU(alpha=0.5), nn.GELU(approximate="tanh"),
                                    nn.Hardtanh(-2.0, 2.0), nn.Mish(), nn.ReLU6()])
def test_other_activation_modules_are_integrated_as_the_module_itself(module):
    act = activation_from_module(module)
    x = torch.linspace(-4, 4, 101, dtype=torch.float64)
    torch.testing.assert_close(act.fn(x), module(x))
    # autograd derivative agrees with a central finite difference away from kinks
    xs = torch.tensor([-2.7, -0.3, 0.4, 1.3], dtype=torch.float64)
    h = 1e-6
    fd = (module(xs + h) - module(xs - h)) / (2 * h)
    torch.testing.assert_close(act.derivative(xs), fd, atol=1e-6, rtol=1e-6)


def test_leaky_relu_is_relu_family():
    assert activation_from_module(nn.LeakyReLU(0.2)).homogeneous


def test_unknown_modules_are_named_not_skipped():
    model = mlp(16, 3, nn.Tanh, extra=nn.LayerNorm(16))
    s = parse_model(model)
    assert s.unrecognised == [("5", "LayerNorm")]
    assert "5 (LayerNorm)" in s.unrecognised_message()


def test_container_with_own_parameters_is_unrecognised():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(4, 4)
            self.scale = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return torch.tanh(self.lin(x)) * self.scale

    s = parse_model(Scaled())
    assert s.depth == 1 and s.activation is None
    assert s.unrecognised == [("", "Scaled")]


def test_mixed_dropout_and_activations_are_reported():
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Dropout(0.1), nn.Linear(4, 4), nn.ReLU(),
                          nn.Dropout(0.3), nn.Linear(4, 4))
    s = parse_model(model)
    assert s.activation is None
    assert any("mixes activations" in n for n in s.notes)
    assert any("keep rates differ" in n for n in s.notes)
    assert s.keep_rate == pytest.approx(0.8)


def test_functional_activation_is_read_from_the_traced_graph():
    class Functional(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(8, 8)
            self.b = nn.Linear(8, 8)

        def forward(self, x):
            return self.b(torch.relu(self.a(x)))

    report = init_(Functional())  # torch.relu in forward: no activation module, found by torch.fx
    assert report.activation == "relu" and report.sigma_w2 == 2.0 and report.sigma_b2 == 0.0


def test_bad_weights_scheme_and_non_module():
    with pytest.raises(ParameterError, match="weights"):
        init_(mlp(4, 2), sigma_w2=1.0, weights="uniform")
    with pytest.raises(ParameterError, match="model"):
        parse_model("not a model")  # type: ignore[arg-type]
    with pytest.raises(ParameterError, match="keep_rate"):
        init_(mlp(4, 2), keep_rate=0.0)


# ---------------------------------------------------------------- init_: empirical variances

@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_init_gives_target_variances_within_2_percent(weights):
    width, sw2, sb2 = 600, 1.7, 0.05
    model = mlp(width, 3, nn.Tanh).double()
    g = torch.Generator().manual_seed(0)
    report = init_(model, sigma_w2=sw2, sigma_b2=sb2, weights=weights, generator=g)
    assert len(report.initialised) == 4
    for _, lin in parse_model(model).linears:
        emp_w, emp_b = linear_variances(lin)
        assert emp_w == pytest.approx(sw2, rel=0.02)
        # mean of W: zero-mean draws (|mean| well below the entry std)
        w_std = math.sqrt(sw2 / lin.in_features)
        assert abs(float(lin.weight.detach().mean())) < 5 * w_std / math.sqrt(lin.weight.numel())
        if lin.out_features >= 500:
            assert emp_b == pytest.approx(sb2, rel=0.2)  # 600 samples: std of the estimate ~ 6%


def test_orthogonal_rows_are_orthogonal_with_norm_sigma_w2():
    model = nn.Sequential(nn.Linear(500, 300), nn.Tanh(), nn.Linear(300, 500))
    init_(model, sigma_w2=2.0, weights="orthogonal", generator=torch.Generator().manual_seed(1))
    w = model[0].weight.detach().double()  # 300 x 500: orthonormal rows, scaled
    torch.testing.assert_close(w @ w.T, 2.0 * torch.eye(300, dtype=torch.float64), atol=1e-5, rtol=0)
    w = model[2].weight.detach().double()  # 500 x 300: orthonormal columns, entry var 2/300
    eye = torch.eye(300, dtype=torch.float64)
    torch.testing.assert_close(w.T @ w, 2.0 * 500 / 300 * eye, atol=1e-5, rtol=0)


def test_init_leaves_normalisation_as_it_is_and_refuses_modules_it_does_not_understand():
    model = mlp(32, 3, nn.Tanh, extra=nn.LayerNorm(32))
    with torch.no_grad():
        model[5].weight.uniform_(0.5, 1.5)
    before = [p.detach().clone() for p in model[5].parameters()]
    report = init_(model, sigma_w2=1.5, sigma_b2=0.0)
    for b, p in zip(before, model[5].parameters(), strict=True):
        assert torch.equal(b, p)
    assert report.untouched == [("5", "LayerNorm")]
    assert "LayerNorm" in report.summary()
    for _, lin in parse_model(model).linears:
        assert torch.count_nonzero(lin.bias) == 0

    class Gain(nn.Module):  # an elementwise learnable gain: torch.fx traces through it to x * self.g
        def __init__(self):
            super().__init__()
            self.g = nn.Parameter(torch.ones(32))

        def forward(self, x):
            return x * self.g

    with pytest.raises(ParameterError, match=r"'5\.g'.*not understand"):
        init_(mlp(32, 3, nn.Tanh, extra=Gain()))
    with pytest.raises(ParameterError, match=r"'3' \(PReLU\) is not understood"):
        init_(nn.Sequential(nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 8), nn.PReLU(), nn.Linear(8, 8)))


def test_init_is_reproducible_with_a_generator():
    a, b = mlp(16, 2), mlp(16, 2)
    init_(a, sigma_w2=1.0, sigma_b2=0.1, generator=torch.Generator().manual_seed(7))
    init_(b, sigma_w2=1.0, sigma_b2=0.1, generator=torch.Generator().manual_seed(7))
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_no_bias_layers_are_noted_when_sigma_b2_positive():
    model = mlp(8, 2, bias=False)
    report = init_(model, sigma_w2=1.0, sigma_b2=0.2)
    assert any("no bias" in n for n in report.notes)


def test_relu_dropout_model_init_preserves_variance_in_a_forward_pass():
    """Independent check of the noise bookkeeping: at sw2 = 2 rho (rho = 1 - p) a wide ReLU+Dropout net in
    train mode keeps the mean squared pre-activation ~constant over depth (follow-ups section 1)."""
    width, depth, p = 1000, 12, 0.3
    torch.manual_seed(3)
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, bias=False), nn.ReLU(), nn.Dropout(p)]
    model = nn.Sequential(*layers).double().train()
    report = init_(model, generator=torch.Generator().manual_seed(3))
    assert report.sigma_w2 == 2 * (1 - p)
    x = torch.randn(64, width, dtype=torch.float64)
    ratios = np.array(_pre_activation_q(model, x))
    ratios = ratios / ratios[0]
    # q^l / q^1 stays 1 within finite-width fluctuations (log q is a random walk with step var ~ 5/width)
    assert np.all(np.abs(np.log(ratios)) < 4 * math.sqrt(depth * 5.0 / width / 64) + 0.05)
    # He init with the same dropout (sw2 = 2) explodes as (1/rho)^l
    init_(model, sigma_w2=2.0, generator=torch.Generator().manual_seed(4))
    q_he = _pre_activation_q(model, x)
    assert q_he[-1] / q_he[0] == pytest.approx((1 / (1 - p)) ** (depth - 1), rel=0.25)


def _pre_activation_q(model: nn.Sequential, x: torch.Tensor) -> list[float]:
    q = []
    with torch.no_grad():
        for m in model:
            x = m(x)
            if isinstance(m, nn.Linear):
                q.append(float(x.square().mean()))
    return q


# ---------------------------------------------------------------- diagnose vs the engine

def _relu_dropout_xi_c(rho: float) -> float:
    """Closed form (follow-ups section 1): c* of c' = (sqrt(1-c^2) + (pi - arccos c) c) / (pi mu2)."""
    from scipy.optimize import brentq

    mu2 = 1 / rho
    c = brentq(lambda c: (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / (math.pi * mu2) - c,
               0.0, 1 - 1e-15, xtol=1e-15)
    return -1 / math.log((math.asin(c) / math.pi + 0.5) / mu2)


def test_diagnose_on_init_model_reports_engine_numbers_tanh():
    import deepprop.theory.meanfield as mf_mod
    model = mlp(600, 5, nn.Tanh).double()
    report = init_(model, generator=torch.Generator().manual_seed(11))
    assert round(report.sigma_w2, 4) == 1.7610 and report.sigma_b2 == 0.05
    d = diagnose(model)
    assert d.depth == 6 and d.activation == "tanh" and d.keep_rate == 1.0
    assert d.sigma_w2 == pytest.approx(report.sigma_w2, rel=0.01)
    target = mf_mod.mean_field("tanh", report.sigma_w2, report.sigma_b2)
    # chi_1 is linear in sw2 near the critical point: within the sampling error of the variances
    assert d.chi1 == pytest.approx(target.to_dict()["chi1"], abs=0.01)
    # q* = sw2 E[phi^2] + sb2 amplifies variance errors by 1/(1 - dQ/dq) (~2 here)
    assert d.q_star == pytest.approx(target.to_dict()["q_star"], rel=0.05)
    # and exactly the engine's numbers at the empirical variances
    emp = mf_mod.mean_field("tanh", d.sigma_w2, d.sigma_b2)
    assert d.chi1 == emp.to_dict()["chi1"] and d.q_star == emp.to_dict()["q_star"]
    assert d.trainable and "expect it to train" in d.verdict


def test_diagnose_relu_dropout_gives_closed_form_xi_c_and_not_trainable_verdict():
    rho, depth = 0.8, 20
    layers: list[nn.Module] = []
    for _ in range(depth - 1):
        layers += [nn.Linear(500, 500), nn.ReLU(), nn.Dropout(1 - rho)]
    model = nn.Sequential(*layers, nn.Linear(500, 10))
    report = init_(model, generator=torch.Generator().manual_seed(5))
    assert report.sigma_w2 == 2 * rho and report.sigma_b2 == 0.0
    d = diagnose(model)
    assert d.keep_rate == pytest.approx(rho, abs=1e-15)
    # with sb2 = 0 the ReLU correlation map does not depend on sw2: the sampling error cannot move xi_c
    assert d.xi_c == pytest.approx(_relu_dropout_xi_c(rho), abs=1e-6)
    assert not d.trainable
    assert d.verdict.startswith("depth 20 > 6*xi_c = 9: expect it not to train")


def test_diagnose_default_pytorch_init_is_ordered_and_suggests_critical_point():
    """nn.Linear's default init (kaiming_uniform with a = sqrt(5)) has Var W = 1/(3 fan_in): sw2 = 1/3."""
    torch.manual_seed(0)
    model = mlp(800, 29, nn.Tanh)
    d = diagnose(model)
    assert d.sigma_w2 == pytest.approx(1 / 3, rel=0.01)
    assert d.phase == "ordered" and d.chi1 < 1
    assert not d.trainable
    assert "expect it not to train; init_ would move it to sw2 = 1.76, sb2 = 0.05" in d.verdict
    assert d.advice.sigma_w2 == pytest.approx(1.76095, abs=1e-5)


# ---------------------------------------------------------------- the noise keywords at the model boundary

def test_noise_keywords_reach_the_engine():
    # ReLU: E[phi'(z)^2] = 1/2 at every q, so chi_1 = sigma_w2 mu2 / 2 with mu2 = (1 + noise_mult^2) / keep_rate
    # (closed form), and the critical init is sigma_w2 = 2 keep_rate, sigma_b2 = 0
    model = mlp(64, 4, nn.ReLU)  # no Dropout module: the keyword alone gives the keep rate
    report = init_(model, keep_rate=0.8, generator=torch.Generator().manual_seed(0))
    assert report.keep_rate == 0.8 and report.sigma_w2 == pytest.approx(1.6, rel=1e-12)
    with warnings.catch_warnings():  # the advice beside the diagnosis is not exact with additive noise
        warnings.simplefilter("ignore")
        d = diagnose(model, keep_rate=0.95, noise_mult=0.3, noise_add=0.1)  # chi_1 ~ 0.92: q* is finite
    assert (d.keep_rate, d.noise_mult, d.noise_add) == (0.95, 0.3, 0.1)
    assert d.chi1 == pytest.approx(d.sigma_w2 * (1 + 0.3**2) / 0.95 / 2, rel=1e-12)
    plain = diagnose(model)  # defaults: the model's keep rate (no Dropout: 1), no Gaussian noise
    assert (plain.keep_rate, plain.noise_mult, plain.noise_add) == (1.0, 0.0, 0.0)
    assert plain.chi1 == pytest.approx(plain.sigma_w2 / 2, rel=1e-12)


@pytest.mark.parametrize("function", [init_, diagnose])
def test_an_unknown_noise_keyword_fails_by_name_and_leaves_the_model(function):
    model = mlp(8, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(TypeError, match=rf"^{function.__name__}\(\) got an unexpected keyword argument 'keep_rat'$"):
        function(model, keep_rat=0.9)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ParameterError, match="keep_rate"):  # a known keyword's value is checked as before
        function(model, keep_rate=1.5)


@pytest.mark.parametrize("function", [init_, diagnose])
def test_noise_keywords_are_one_declared_type_shown_in_the_signature(function):
    import inspect
    import typing

    from deepprop.prior import NoiseKeywords

    noise = inspect.signature(function).parameters["noise"]
    assert noise.kind is inspect.Parameter.VAR_KEYWORD and "NoiseKeywords" in str(noise)
    assert typing.get_args(typing.get_type_hints(function)["noise"]) == (NoiseKeywords,)
    assert set(NoiseKeywords.__annotations__) == {"keep_rate", "noise_mult", "noise_add"}
    assert all(f"``{k}``" in function.__doc__ for k in NoiseKeywords.__annotations__)


def test_diagnose_reads_init_s_setting_back_when_dropout_skips_the_first_and_last_layers():
    """init_ gives a Linear without dropout in front (the first, the readout) its own noise-free sigma_w2 (2 for
    ReLU) and the others the noisy one (2 rho = 1.6 at keep rate 0.8, the closed form chi_1 = sigma_w2 / (2 rho)
    = 1). diagnose averages the layers the theory's recursion describes, so it reads chi_1 = 1 back (it read
    1.62 and "unbounded" when it averaged all 21)."""
    torch.manual_seed(0)
    layers: list[nn.Module] = [nn.Linear(32, 128), nn.ReLU()]
    for _ in range(19):
        layers += [nn.Dropout(0.2), nn.Linear(128, 128), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(128, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deepprop.init_(model)
        d = deepprop.diagnose(model)
    assert d.keep_rate == pytest.approx(0.8)
    assert max(d.layer_sigma_w2) == pytest.approx(2.0, rel=0.1)  # the noise-free layers, left out
    assert d.sigma_w2 == pytest.approx(1.6, rel=0.02)
    assert d.chi1 == pytest.approx(1.0, abs=0.02)
    assert any("19 Linear layers with dropout in front" in n for n in d.notes)


def test_advice_warnings_point_at_the_users_line():
    """An AdviceWarning raised deep inside init_ / diagnose (under torch.no_grad) is attributed to the caller's
    line, not to deepprop's or torch's own files."""
    model = nn.Sequential(nn.Linear(20, 64), nn.Tanh(), nn.Dropout(0.1), nn.Linear(64, 64), nn.Tanh(),
                          nn.Dropout(0.1), nn.Linear(64, 10))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        init_(model)
        diagnose(model)
    advice = [w for w in caught if w.category.__name__ == "AdviceWarning"]
    assert len(advice) >= 2 and all(w.filename == __file__ for w in advice)


def test_a_dropout_that_drops_everything_is_named():
    """nn.Dropout(p=1) keeps no unit: init_ and diagnose refuse it naming the dropout and p, not "keep_rate 0"."""
    model = nn.Sequential(nn.Linear(10, 20), nn.Tanh(), nn.Dropout(1.0), nn.Linear(20, 5))
    for call in (init_, diagnose):
        with pytest.raises(ParameterError, match=r"Dropout.*p = 1: it drops every unit"):
            call(model)


def test_a_misnamed_noise_keyword_is_named_with_the_ones_there_are():
    """mean_field(..., dropout=0.1) names the keyword and the noise keywords (not an internal build())."""
    with pytest.raises(TypeError, match=r"'dropout'.*keep_rate, noise_mult, noise_add.*1 - p of nn.Dropout"):
        deepprop.mean_field("tanh", 1.5, 0.05, dropout=0.1)
