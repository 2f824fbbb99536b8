"""deepprop.profile on real PyTorch models: predictions against closed forms and against Monte Carlo on the
finite networks (computed here, outside the library), the contract of the table, bad input."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import deepprop
from deepprop.errors import ParameterError
from deepprop.integrations.diagnosis import fit_correlation_scale
from deepprop.integrations.profile import COLUMNS, profile
from deepprop.integrations.zoo import NormMLP, ResidualMLP, VanillaCNN


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def relu_cmap(c: float) -> float:
    """Arc-cosine kernel of degree 1 over q/2 (Cho & Saul 2009): the ReLU correlation map without bias."""
    c = min(max(c, -1.0), 1.0)
    return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi


def sw2_of(linear: nn.Module) -> float:
    w = linear.weight.detach().double()
    return float(w.square().sum(1).mean())  # fan_in mean(W^2), summed over the kernel taps for a conv


def rows_by_name(p) -> dict:
    return {r["name"]: r for r in p.rows}


# ------------------------------------------------------------------------------------- predictions: closed forms


def test_relu_stack_prediction_is_the_closed_form_and_the_measurement_agrees():
    torch.manual_seed(1)
    width, depth = 512, 6
    layers: list[nn.Module] = []
    for _ in range(depth):
        layers += [nn.Linear(width, width, bias=False), nn.ReLU()]
    model = nn.Sequential(*layers)
    p = profile(model, torch.randn(2, width), inits=4, pairs=8, c0=0.3)
    q, c = 1.0, 0.3
    for i, m in enumerate(model):
        r = p.rows[i + 1]
        if isinstance(m, nn.Linear):
            q = sw2_of(m) * (q if i == 0 else q)  # pre-activation: sw2 * E[relu(z)^2] = sw2 q_prev / 2
            expect_q, expect_c = q, c
        else:
            c = relu_cmap(c)
            q = q / 2
            expect_q, expect_c = q, c
        assert r["theory"] == "exact"
        assert r["q_theory"] == pytest.approx(expect_q * p.q0, rel=1e-9)
        assert r["c_theory"] == pytest.approx(expect_c, abs=1e-9)
        # Monte Carlo on the real network (4 initialisations x 8 pairs at width 512)
        assert abs(r["q"] - r["q_theory"]) < 4 * r["q_err"] + 0.03 * r["q_theory"]
        assert abs(r["c"] - r["c_theory"]) < 4 * r["c_err"] + 0.02
    relu_rows = [r for r in p.rows if r["kind"] == "activation"]
    assert all(abs(r["chi"] - 0.5) < 4 * r["chi_err"] + 0.02 for r in relu_rows)  # E[relu'(z)^2] = 1/2


def test_dropout_uses_keep_rate_one_minus_p():
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(256, 256, bias=False), nn.ReLU(), nn.Dropout(0.2),
                          nn.Linear(256, 256, bias=False)).train()
    p = profile(model, torch.randn(2, 256), inits=4, pairs=8, c0=0.6)
    relu, drop, lin = p.rows[2], p.rows[3], p.rows[4]
    assert drop["kind"] == "dropout"
    assert drop["q_theory"] / relu["q_theory"] == pytest.approx(1 / 0.8, rel=1e-12)  # rho = 1 - p, not p
    # independent masks on the two inputs: q_ab unchanged, so c drops by rho (eq. 12)
    assert drop["c_theory"] == pytest.approx(0.8 * relu["c_theory"], rel=1e-12)
    assert drop["chi_theory"] == pytest.approx(1 / 0.8, rel=1e-12)
    for r in (drop, lin):
        assert abs(r["q"] / r["q_theory"] - 1) < 4 * r["q_err"] / r["q_theory"] + 0.04
        assert abs(r["c"] - r["c_theory"]) < 4 * r["c_err"] + 0.02


def test_layernorm_sets_q_to_its_gain_and_keeps_the_centred_correlation():
    torch.manual_seed(3)
    ln = nn.LayerNorm(256)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.normal_(0.0, 0.1)
    model = nn.Sequential(nn.Linear(256, 256), nn.Tanh(), ln)
    p = profile(model, torch.randn(2, 256), inits=4, pairs=8, c0=0.4)
    r = p.rows[-1]
    g2 = float(ln.weight.detach().double().square().mean())
    b2 = float(ln.bias.detach().double().square().mean())
    gb = float((ln.weight.detach().double() * ln.bias.detach().double()).mean())
    assert r["theory"] == "exact"
    # tanh is odd: its output has zero mean, so E[y^2] = mean(g^2) v/(v + eps) + mean(b^2) (eps = 1e-5, v ~ 0.4)
    assert r["q_theory"] == pytest.approx(g2 + b2, rel=1e-4)
    assert abs(r["q"] - r["q_theory"]) < 4 * r["q_err"] + 0.02 * r["q_theory"]
    # the correlation of the normalised (centred) signal is the input's, mixed with the shift b
    c_in = p.rows[-2]["c_theory"]
    assert r["c_theory"] == pytest.approx((g2 * c_in + b2) / (g2 + b2), rel=1e-4)
    assert abs(r["c"] - r["c_theory"]) < 4 * r["c_err"] + 0.02
    assert gb == pytest.approx(0.0, abs=0.02)  # the shift term 2 mean(g b) E[y] vanishes with E[y] = 0 anyway


def test_residual_stream_against_monte_carlo_computed_here():
    """x + relu(W x + b) blocks: the stream's q and c predicted (means' cross terms included) against the
    finite network's own statistics, gathered here with forward hooks on the blocks."""
    torch.manual_seed(4)
    model = ResidualMLP(n_in=64, width=512, blocks=6)
    p = profile(model, torch.randn(2, 64), inits=6, pairs=8, c0=0.5, seed=3)
    adds = [r for r in p.rows if r["kind"] == "add"]
    assert len(adds) == 6 and all(r["on_spine"] for r in adds)
    outs: list[torch.Tensor] = []
    hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o.detach().double())) for b in model.blocks]
    gen = torch.Generator().manual_seed(11)
    qs, cs = np.zeros((6, 6)), np.zeros((6, 6))
    with torch.no_grad():
        for k in range(6):
            model_k = ResidualMLP(n_in=64, width=512, blocks=6)  # fresh default initialisations
            model_k.load_state_dict(model.state_dict())
            for m in model_k.modules():
                if isinstance(m, nn.Linear):  # the same distribution: entries permuted with random signs
                    w = m.weight
                    perm = torch.randperm(w.numel(), generator=gen)
                    sign = torch.randint(0, 2, (w.numel(),), generator=gen) * 2.0 - 1
                    w.copy_((w.reshape(-1)[perm] * sign).reshape(w.shape))
            outs.clear()
            for h in hooks:
                h.remove()
            hooks = [b.register_forward_hook(lambda m, i, o: outs.append(o.detach().double())) for b in model_k.blocks]
            xa = torch.randn(16, 64, generator=gen)
            xb = 0.5 * xa + math.sqrt(0.75) * torch.randn(16, 64, generator=gen)
            model_k(torch.cat([xa * math.sqrt(p.q0), xb * math.sqrt(p.q0)]))
            for j, o in enumerate(outs):
                a, b = o[:16], o[16:]
                qs[k, j] = float(torch.cat([a, b]).square().mean())
                cs[k, j] = float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean())
    for j, r in enumerate(adds):
        q_mc, q_se = qs[:, j].mean(), qs[:, j].std(ddof=1) / math.sqrt(6)
        assert abs(q_mc / r["q_theory"] - 1) < 4 * q_se / q_mc + 0.05, (j, q_mc, r["q_theory"])
        assert abs(cs[:, j].mean() - r["c_theory"]) < 0.02
    for h in hooks:
        h.remove()


def test_delta_orthogonal_cnn_reduces_to_the_fully_connected_relu_maps():
    """init_ gives delta-orthogonal kernels: the profile's prediction is then the orthogonal fully connected
    one (Xiao et al. 2018): q preserved at sw2 = 2, c by the arc-cosine map, and the measurement agrees."""
    torch.manual_seed(5)
    model = VanillaCNN(in_channels=64, channels=128, depth=4)
    x = torch.randn(2, 64, 8, 8)
    deepprop.init_(model, example_input=x, generator=torch.Generator().manual_seed(0))
    conv = model[2]
    w = conv.weight.detach().double()
    centre = w[:, :, 1, 1]
    assert float(w.square().sum()) == pytest.approx(float(centre.square().sum()), rel=1e-12)  # other taps zero
    # a scaled orthogonal centre with fan_in mean(W^2) = sw2 = 2 (ReLU's critical point)
    torch.testing.assert_close(centre @ centre.T, 2.0 * torch.eye(128, dtype=torch.float64), atol=1e-5, rtol=0)
    p = profile(model, x, inits=4, pairs=4, c0=0.2)
    c = 0.2
    acts = [r for r in p.rows if r["kind"] == "activation"]
    convs = [r for r in p.rows if r["kind"] == "conv"]
    sources = p.to_frame(details=True).set_index("kind").loc["conv", "source"]
    assert all(text.startswith("delta-orthogonal") for text in sources)
    for a, cv in zip(acts, convs, strict=True):
        assert cv["c_theory"] == pytest.approx(c, abs=1e-9)
        c = relu_cmap(c)
        assert a["c_theory"] == pytest.approx(c, abs=1e-9)
        assert abs(a["c"] - a["c_theory"]) < 4 * a["c_err"] + 0.02
    for cv in convs[1:]:
        assert cv["q_theory"] == pytest.approx(convs[0]["q_theory"], rel=1e-9)  # variance preserved
        assert abs(cv["q"] / cv["q_theory"] - 1) < 4 * cv["q_err"] / cv["q_theory"] + 0.05


def test_gaussian_conv_with_zero_padding_and_global_pooling_against_monte_carlo_here():
    """PyTorch's default conv init, zero padding (the border loses signal layer by layer), a tanh and a
    global average pool: predicted q and c against the statistics of fresh networks computed here."""
    torch.manual_seed(6)
    make = lambda: nn.Sequential(nn.Conv2d(3, 128, 3, padding=1), nn.Tanh(),  # noqa: E731
                                 nn.Conv2d(128, 128, 3, padding=1), nn.Tanh(), nn.AdaptiveAvgPool2d(1))
    model = make()
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(3.0)  # sw2 = 3 (chaotic side): large enough for tanh to bend
    x = torch.randn(2, 3, 10, 10)
    p = profile(model, x, inits=4, pairs=4, c0=0.5)
    rows = p.rows
    gen = torch.Generator().manual_seed(3)
    qs, cs = [], []
    with torch.no_grad():
        for _ in range(6):
            net = make()
            for m, ref in zip(net, model, strict=True):
                if isinstance(m, nn.Conv2d):  # same per-tap energy: a Gaussian draw at the reference's scale
                    std = float(ref.weight.detach().std())
                    m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * std)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * float(ref.bias.detach().std()))
            xa = torch.randn(8, 3, 10, 10, generator=gen)
            xb = 0.5 * xa + math.sqrt(0.75) * torch.randn(8, 3, 10, 10, generator=gen)
            o = net[:4](torch.cat([xa, xb]))
            qs.append(float(o.square().mean()))
            a, b = o[:8].flatten(1), o[8:].flatten(1)
            cs.append(float(((a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))).mean()))
    last_tanh = rows[4]
    assert last_tanh["theory"] == "exact"
    assert np.mean(qs) == pytest.approx(last_tanh["q_theory"], rel=0.05)
    assert np.mean(cs) == pytest.approx(last_tanh["c_theory"], abs=0.03)
    pool = rows[5]
    assert pool["kind"] == "adaptive_avgpool" and pool["theory"] == "approximate"  # the border breaks invariance
    assert abs(pool["q"] / pool["q_theory"] - 1) < 4 * pool["q_err"] / pool["q_theory"] + 0.1
    assert abs(pool["c"] - pool["c_theory"]) < 4 * pool["c_err"] + 0.05


# ------------------------------------------------------------------------------------- gains and the Jacobian


def test_linear_chi_is_the_exact_mean_squared_singular_value():
    torch.manual_seed(7)
    lin = nn.Linear(64, 96)
    model = nn.Sequential(lin, nn.Tanh())
    p = profile(model, torch.randn(2, 64), inits=1, pairs=200)
    w = lin.weight.detach().double()
    exact = float((w.T @ w).trace()) / 64  # tr(J^T J) / n_in for J = W
    r = p.rows[1]
    assert r["chi_theory"] == pytest.approx(exact, rel=1e-9)
    # one initialisation, 400 random tangents: the estimate's relative error is ~ sqrt(2 / (400 * 96))
    assert r["chi"] == pytest.approx(exact, rel=0.03)


def test_end_to_end_gain_of_a_linear_network_is_the_product_of_layer_gains():
    """Over redraws (independent signed permutations between layers) E tr(J^T J) factorises into the layers'
    tr(W^T W) / n_in; measured by random Jacobian-vector products on 200 redraws."""
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(32, 32, bias=False), nn.Linear(32, 32, bias=False), nn.Linear(32, 16, bias=False))
    p = profile(model, torch.randn(2, 32), inits=200, pairs=1, jacobian=True)
    gain = 1.0
    for m in model:
        w = m.weight.detach().double()
        gain *= float(w.square().sum()) / w.shape[0]  # per-entry tangent variance gain: fan_in mean(W^2)
    assert p.jacobian["mean_sq_sv_theory"] == pytest.approx(gain, rel=1e-9)  # n_out T_out / min(n_in, n_out)
    j = p.jacobian
    assert abs(j["mean_sq_sv"] - gain) < 4 * j["mean_sq_sv_err"]


def test_spread_estimator_converges_to_the_singular_value_spread():
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(24, 24, bias=False))  # signed permutations keep its singular values
    p = profile(model, torch.randn(2, 24), inits=400, pairs=1)
    s2 = torch.linalg.svdvals(model[0].weight.detach().double()) ** 2
    spread = float(s2.var(unbiased=False) / s2.mean() ** 2)
    assert p.jacobian["spread"] == pytest.approx(spread, rel=0.3)
    assert p.jacobian["mean_sq_sv"] == pytest.approx(float(s2.mean()), rel=0.1)


# ------------------------------------------------------------------------------------- contract and labels


def test_frame_has_exactly_the_contract_columns_and_labels():
    torch.manual_seed(10)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(16 * 4 * 4, 10))
    p = deepprop.profile(model, torch.randn(2, 3, 8, 8), inits=2, pairs=4)
    frame = p.to_frame()
    assert tuple(frame.columns) == COLUMNS == ("name", "kind", "q", "q_err", "q_theory", "c", "c_err", "c_theory",
                                               "chi", "chi_err", "chi_theory", "theory")
    assert set(frame.theory) <= {"exact", "approximate", "none"}
    by = dict(zip(frame.name, frame.theory, strict=True))
    assert by["0"] == "exact" and by["1"] == "none" and all(by[k] == "none" for k in ("2", "3", "4", "5"))
    assert frame.loc[frame.theory == "none", "q_theory"].isna().all()
    details = p.to_frame(details=True)
    assert "BatchNorm" in details.set_index("name").loc["1", "source"]
    assert "measured only" in details.set_index("name").loc["3", "source"]
    from deepprop.jsonout import to_json

    d = json.loads(to_json(p))
    # the contract's columns, in order; strict JSON adds KEY_reason beside a null (chi of the input row)
    assert all(list(r)[: len(COLUMNS)] == list(COLUMNS) for r in d["rows"]) and len(d["rows"]) == len(frame)
    assert all(k in COLUMNS or k.endswith("_reason") for r in d["rows"] for k in r)
    assert d["verdict"]["measured_only"] == ["1", "2", "3", "4", "5"]


def test_untraceable_model_falls_back_to_hooks_and_says_so():
    class Branchy(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(32, 32), nn.Linear(32, 32)

        def forward(self, x):
            h = torch.tanh(self.a(x))
            if h.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                h = h * 1.0
            return self.b(h)

    p = profile(Branchy(), torch.randn(2, 32), inits=2, pairs=4)
    assert p.method == "hooks" and "torch.fx could not trace" in p.notes[0]
    # torch.tanh is a function, not a module: b's input was computed outside modules, so no theory from there
    rows = rows_by_name(p)
    assert rows["a"]["theory"] == "exact" and rows["b"]["theory"] == "none"


def test_same_seed_same_profile_and_the_model_is_not_changed():
    torch.manual_seed(11)
    model = ResidualMLP(16, 32, 3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 16)
    a = profile(model, x, inits=3, pairs=2, seed=5).to_frame()
    b = profile(model, x.clone(), inits=3, pairs=2, seed=5).to_frame()
    assert a.equals(b)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


# ------------------------------------------------------------------------------------- bad input: one line


@pytest.mark.parametrize("build, x, param, text", [
    (lambda: nn.Linear(8, 4), torch.randn(2, 5), "example_input", "does not run on it"),
    (lambda: nn.Sequential(nn.ReLU(), nn.Tanh()), torch.randn(2, 5), "model", "no parameters"),
    (lambda: nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4, device="meta")), torch.randn(2, 4), "model",
     "several devices"),
    (lambda: nn.Linear(4, 4), torch.randn(4), "example_input", "batch dimension"),
    (lambda: nn.Linear(4, 4), torch.full((2, 4), float("nan")), "example_input", "NaN"),
    (lambda: "not a model", torch.randn(2, 4), "model", "torch.nn.Module"),
])
def test_bad_input_is_one_parameter_error(build, x, param, text):
    with pytest.raises(ParameterError) as info:
        profile(build(), x)
    assert info.value.param == param and text in info.value.detail and "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs, param", [({"inits": 0}, "inits"), ({"c0": 1.5}, "c0"), ({"pairs": 0}, "pairs"),
                                           ({"pairs": (torch.randn(3, 4), torch.randn(2, 4))}, "pairs"),
                                           ({"redraw": "fresh"}, "redraw")])
def test_bad_settings_name_the_parameter(kwargs, param):
    with pytest.raises(ParameterError) as info:
        profile(nn.Linear(4, 4), torch.randn(2, 4), **kwargs)
    assert info.value.param == param


# ------------------------------------------------------------------------------------- diagnosis


def test_correlation_fit_recovers_a_known_depth_scale():
    depth = np.arange(40.0)
    c = 0.9 - 0.4 * np.exp(-depth / 4.0)
    xi, err, c_inf, status = fit_correlation_scale(depth, c, np.full(40, 1e-4))
    assert status == "fit" and xi == pytest.approx(4.0, rel=1e-3) and c_inf == pytest.approx(0.9, abs=1e-4)
    flat = fit_correlation_scale(depth, np.full(40, 0.5) + 1e-5 * np.sin(depth), np.full(40, 1e-3))
    assert flat[3] == "flat"


def test_verdicts_of_the_four_families_and_init_fixes_the_cnn():
    torch.manual_seed(12)
    x = torch.randn(2, 1, 7, 7)
    cnn = VanillaCNN(1, 16, 30, activation=nn.Tanh)
    d = deepprop.profile(cnn, x, inits=3, pairs=2).diagnosis
    assert d.trainable is False and "collapse" in d.reasons[0]  # PyTorch default: sw2 = 1/3, deeply ordered
    deepprop.init_(cnn, example_input=x, generator=torch.Generator().manual_seed(0))
    d = deepprop.profile(cnn, x, inits=3, pairs=2).diagnosis
    assert d.trainable is True and d.measured_only == []
    res = ResidualMLP(32, 64, 30)
    d = deepprop.profile(res, torch.randn(2, 32), inits=3, pairs=2).diagnosis
    assert d.trainable is False  # the default init's stream piles up ReLU means: the inputs collapse
    ln = NormMLP(32, 64, 6, norm="layer")
    d = deepprop.profile(ln, torch.randn(2, 32), inits=3, pairs=4).diagnosis
    assert d.trainable is True and d.measured_only == []
    bn = NormMLP(32, 64, 6, norm="batch")
    d = deepprop.profile(bn, torch.randn(2, 32), inits=3).diagnosis
    assert d.trainable is True and len(d.measured_only) == 3 * 6  # from the first BatchNorm on, head included
    assert "measured only" in d.verdict


def test_diagnose_dispatches_plain_stacks_to_the_engine_and_others_to_the_profile():
    from deepprop.integrations.diagnosis import ProfileDiagnosis
    from deepprop.integrations.pytorch import Diagnosis

    plain = nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4))
    assert isinstance(deepprop.diagnose(plain), Diagnosis)
    assert isinstance(deepprop.diagnose(ResidualMLP(16, 16, 2), inits=2), ProfileDiagnosis)
    with pytest.raises(ParameterError, match="example_input"):
        deepprop.diagnose(VanillaCNN(3, 4, 2))


def test_conditioning_can_only_turn_a_verdict_into_cannot_tell():
    torch.manual_seed(13)
    model = nn.Sequential(*[m for _ in range(6) for m in (nn.Linear(64, 64), nn.Tanh())])
    deepprop.init_(model)
    p = profile(model, torch.randn(2, 64), inits=3, pairs=4)
    assert p.diagnosis.trainable is True and any(r.startswith("conditioning") for r in p.diagnosis.reasons)
    p.jacobian.update(spread=50.0, spread_err=1.0)  # far worse conditioned than 6 Gaussian layers (~6)
    p._diagnosis = None
    assert p.diagnosis.trainable is None and p.diagnosis.verdict.startswith("cannot tell (conditioning)")
    p.jacobian.update(spread=7.0, spread_err=1.0)  # within two standard errors of the depth: still trains
    p._diagnosis = None
    assert p.diagnosis.trainable is True


def _relu_dropout_mlp(seed: int) -> torch.nn.Module:
    """20 hidden ReLU layers of width 256, nn.Dropout(0.2) (keep rate 0.8) before every Linear after the first,
    at init_'s critical point: c* = 0.473 and xi_c = 1.55 in theory, so depth 21 is far beyond 6 xi_c."""
    torch.manual_seed(seed)
    layers: list[torch.nn.Module] = [torch.nn.Linear(32, 256), torch.nn.ReLU()]
    for _ in range(19):
        layers += [torch.nn.Dropout(0.2), torch.nn.Linear(256, 256), torch.nn.ReLU()]
    model = torch.nn.Sequential(*layers, torch.nn.Linear(256, 10))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        deepprop.init_(model)
    return model


@pytest.mark.parametrize("seed", [1, 2])
def test_a_pair_started_at_the_correlations_limit_is_not_read_as_survival(seed):
    """c0 = 0.5 sits next to c* = 0.473: the pair barely moves whatever xi_c is. The verdict must not be
    "expect it to train" (it was, with xi_c = 5e4 and a correlation limit of 93); from c0 = 0.99 the pair
    relaxes and the fitted xi_c lies near the theory's (mean_field, independent of the profile)."""
    from deepprop import mean_field

    model = _relu_dropout_mlp(seed)
    x = torch.randn(16, 32)
    near = deepprop.profile(model, x, c0=0.5).diagnosis
    assert near.trainable is not True
    d = near.to_dict()
    for key in ("xi_c", "c_limit"):  # a value is a fitted relaxation or null with its reason, never an extrapolation
        assert (d[key] is None or math.isnan(d[key])) == (f"{key}_reason" in d)
        if f"{key}_reason" not in d:
            assert -1 <= d["c_limit"] <= 1
    far = deepprop.profile(model, x, c0=0.99).diagnosis
    theory = float(mean_field("relu", 1.6, 0.0, keep_rate=0.8).xi_c)
    assert far.trainable is False
    assert far.xi_c == pytest.approx(theory, rel=0.6)
    assert far.xi_c_theory == pytest.approx(theory, rel=0.2)  # the same-window fit of the theory curve
