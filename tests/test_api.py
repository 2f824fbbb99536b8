"""The documented contract of the public API, as a notebook reaches it: a NetworkPrior first (the loose
numbers are a convenience meaning the same), labelled results, one default q0, Python floats for scalar
inputs, silent progress unless asked, fits with error bars, advice that warns.

Independent references: the loose form against the prior form (same numbers, bit for bit), the scatter of a
fit over independent seeds against its jackknife error bar, and the engine's own phase at the advice.
"""

import inspect
import math
import warnings

import numpy as np
import pytest

import deepprop
from deepprop import NetworkPrior, ParameterError, UniformDropout
from deepprop.advice import AdviceWarning, critical_init, maximize_depth_result, maximize_xi_c
from deepprop.grid_export import phase_diagram_resumable
from deepprop.networks import Ensemble
from deepprop.simulate import jacobian_spectrum, simulate_forward, simulate_gradients
from deepprop.simulate.backprop_modes import backprop_depth_scales, covariance_transient
from deepprop.simulate.correlation_scale import correlation_scale_fidelity
from deepprop.simulate.forward import FIT_KEYS
from deepprop.theory.backprop import gradient_theory, pair_covariance_profile
from deepprop.theory.grid import phase_diagram
from deepprop.theory.maps import TensorPrior
from deepprop.theory.meanfield import DEFAULT_Q0, critical_sigma_w2, mean_field, measured_depth_scales, trajectory
from deepprop.theory.spectrum import equal_gain_information, information_map, jacobian_moments

PRIOR = NetworkPrior.build("tanh", 1.6, 0.05, keep_rate=0.9, noise_add=0.02)
LOOSE = ("tanh", 1.6, 0.05)
NOISE = {"keep_rate": 0.9, "noise_add": 0.02}


def _same(a, b):
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same(a[k], b[k])
    elif hasattr(a, "to_dict"):
        _same(a.to_dict(), b.to_dict())
    elif isinstance(a, tuple | list):
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    else:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


THEORY = {
    "mean_field": (lambda p, *a, **k: mean_field(p, *a, **k).to_dict(), {}),
    "trajectory": (trajectory, {"depth": 4}),
    "measured_depth_scales": (measured_depth_scales, {"depth": 40}),
    "gradient_theory": (gradient_theory, {"width": 100}),
    "jacobian_moments": (lambda p, *a, **k: jacobian_moments(p, *a, **k).to_dict(), {"depth": 4}),
    "equal_gain_information": (equal_gain_information, {"depth": 3, "grid": 300}),
    "tensor_prior": (lambda p, *a, **k: TensorPrior.build(p, *a, **k).mu2, {}),
}


@pytest.mark.parametrize("name", THEORY)
def test_theory_takes_a_prior_first_and_the_loose_form_means_the_same(name):
    fn, kw = THEORY[name]
    _same(fn(PRIOR, **kw), fn(*LOOSE, **kw, **NOISE))
    with pytest.raises(ParameterError, match="not both"):
        fn(PRIOR, 1.6, **kw)


def test_critical_sigma_w2_prior_first_and_python_floats():
    crit = critical_sigma_w2(PRIOR)
    assert isinstance(crit, float) and crit == critical_sigma_w2("tanh", 0.05, **NOISE)
    assert isinstance(critical_sigma_w2("tanh", [0.0, 0.05]), np.ndarray)
    m = measured_depth_scales(PRIOR, depth=40)
    assert all(isinstance(v, float) for k, v in m.items() if k != "notes") and isinstance(m["notes"], list)
    assert isinstance(mean_field(PRIOR).chi1, np.ndarray)  # MeanField keeps arrays (0-d here)


def test_unknown_network_keyword_is_a_type_error():
    with pytest.raises(TypeError, match="keep_rte"):
        mean_field("tanh", 1.0, 0.0, keep_rte=0.9)


def test_pair_profile_and_information_map_take_a_prior():
    x = np.random.default_rng(0).standard_normal((4, 6))
    pairs = np.array([[0, 1], [2, 3]])
    point = NetworkPrior.build("tanh", 1.6, 0.05, keep_rate=0.9)
    _same(pair_covariance_profile(point, x=x, pairs=pairs, depth=5),
          pair_covariance_profile("tanh", 1.6, 0.05, x, pairs, 5, keep_rate=0.9))
    axes = NetworkPrior.build("tanh", [0.8, 2.5], 0.05)
    _same(information_map(axes, depth=3, grid=300), information_map("tanh", [0.8, 2.5], [0.05], 3, grid=300))


def test_one_default_q0_everywhere():
    for fn in (mean_field, trajectory, measured_depth_scales, simulate_forward):
        assert inspect.signature(fn).parameters["q0"].default == DEFAULT_Q0 == 1.0, fn.__name__
    q, _ = trajectory("tanh", 1.5, 0.05, depth=1)
    assert q[0] == DEFAULT_Q0


def test_meanfield_labels_itself():
    sw2, sb2 = np.linspace(1, 3, 4), np.array([0.0, 0.1, 0.2])
    mf = mean_field("tanh", sw2[:, None], sb2, keep_rate=0.9)
    ds = mf.to_dataset()
    assert ds["xi_c"].dims == ("sigma_w2", "sigma_b2") and ds.attrs["keep_rate"] == 0.9
    np.testing.assert_array_equal(ds["sigma_w2"].values, sw2)
    frame = mf.to_dataframe()
    assert len(frame) == 12 and list(frame.columns[:5]) == ["sigma_w2", "sigma_b2", "keep_rate", "noise_mult",
                                                            "noise_add"]
    row = frame.iloc[7]  # point (2, 1) in C order
    assert row["xi_c"] == mf.xi_c[2, 1] and row["sigma_w2"] == sw2[2] and row["phase"] == mf.phase[2, 1]
    one = mf[2, 1]
    assert one.to_dict()["xi_c"] == pytest.approx(float(mf.xi_c[2, 1]), rel=0, abs=0)
    assert mf[:, 0].shape == (4,) and len(mf) == 4
    text = repr(mf)
    assert len(text) < 200 and "shape=(4, 3)" in text and "keep_rate=0.9" in text and "phases:" in text
    assert "phase=" in repr(one) and "\n" not in repr(one)
    with pytest.raises(ValueError, match="to_dataset"):
        mf.to_dict()


def test_phase_diagram_treats_every_scalar_the_same():
    ds = phase_diagram("tanh", [1.0, 2.0], 0.05, keep_rate=[1.0, 0.9], noise_mult=0.1)
    assert ds["xi_c"].dims == ("sigma_w2", "keep_rate")
    assert ds.attrs["sigma_b2"] == 0.05 and ds.attrs["noise_mult"] == 0.1
    ds1 = phase_diagram("tanh", [1.0, 2.0], [0.05], keep_rate=[0.9])  # a 1-D array is a dimension, any length
    assert ds1["xi_c"].dims == ("sigma_w2", "sigma_b2", "keep_rate")
    np.testing.assert_allclose(ds1["xi_c"].values[:, 0, 0], mean_field("tanh", [1.0, 2.0], 0.05, keep_rate=0.9).xi_c,
                               rtol=1e-12)
    from_prior = phase_diagram(NetworkPrior.build("tanh", 1.0, 0.05, keep_rate=0.9), [1.0, 2.0], [0.05])
    np.testing.assert_array_equal(from_prior["xi_c"].values, ds1["xi_c"].values[:, :, 0])


def test_progress_is_silent_by_default_and_reported_through_a_callback(capsys):
    sw2 = np.linspace(0.5, 4, 200)[:, None]
    sb2 = np.linspace(0, 0.3, 100)  # 20,000 points: two blocks
    calls = []
    mf = mean_field("tanh", sw2, sb2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(1, 2), (2, 2)] and mf.shape == (200, 100)
    mean_field("tanh", sw2, sb2)
    assert capsys.readouterr().err == ""


def test_resumable_grid_takes_a_prior_and_reports_blocks(tmp_path):
    calls = []
    ds = phase_diagram_resumable(NetworkPrior.build("tanh", 1.0, 0.0, keep_rate=0.95), np.linspace(1, 3, 6),
                                 [0.0, 0.1], work_dir=tmp_path, block_points=4, progress=lambda d, t: calls.append(d))
    assert calls == [1, 2, 3] and ds.attrs["keep_rate"] == 0.95
    whole = phase_diagram("tanh", np.linspace(1, 3, 6), [0.0, 0.1], keep_rate=0.95)
    np.testing.assert_allclose(ds["xi_c"].values, whole["xi_c"].values, rtol=1e-12)  # blocks: last-ulp warm starts


def test_resumable_grid_of_a_prior_is_named_by_its_noise(tmp_path):
    """Two priors that differ only in their noise never share saved blocks: the same folder and arguments,
    and each grid equals the one computed in memory for its own noise (a prior and the same numbers given
    as keywords name the same computation)."""
    from deepprop.grid_export import block_folder

    sw2, sb2 = np.linspace(1, 3, 4), [0.05]

    def killed(done, total):
        raise KeyboardInterrupt  # after the first block is saved

    with pytest.raises(KeyboardInterrupt):
        phase_diagram_resumable(NetworkPrior.build("tanh", 1.0, 0.0, keep_rate=0.9), sw2, sb2, work_dir=tmp_path,
                                block_points=2, progress=killed)
    ds = phase_diagram_resumable(NetworkPrior.build("tanh", 1.0, 0.0, keep_rate=1.0), sw2, sb2, work_dir=tmp_path,
                                 block_points=2)  # would resume the killed run's block if named alike
    np.testing.assert_allclose(ds["chi1"].values, phase_diagram("tanh", sw2, sb2)["chi1"].values, rtol=1e-12)
    keywords = {"keep_rate": 0.9, "noise_mult": 0.0, "noise_add": 0.0}
    assert block_folder(tmp_path, "tanh", sw2, sb2, **keywords) == block_folder(
        tmp_path, "tanh", sw2, sb2, **{k: float(v) for k, v in NetworkPrior.build("tanh", 1.0, keep_rate=0.9)
                                       .noise.numbers().items()})


SMALL = {"width": 30, "depth": 4, "networks": 3}
POINT = NetworkPrior.build("tanh", 1.8, 0.05, keep_rate=0.9)
SWEEP = NetworkPrior.build("tanh", [1.2, 2.2], 0.05, keep_rate=0.9)
SIMULATE = {
    "Ensemble.build": (lambda p, *a, **k: Ensemble.build(p, *a, width=8, **k).prior.keywords(), POINT, {}),
    "simulate_forward": (lambda p, *a, **k: simulate_forward(p, *a, pairs=2, **SMALL, **k).to_dict(), POINT, {}),
    "jacobian_spectrum": (lambda p, *a, **k: jacobian_spectrum(p, *a, **SMALL, **k).to_dict(), SWEEP, {}),
    "simulate_gradients": (lambda p, *a, **k: simulate_gradients(p, *a, batch_size=8, **SMALL, **k).to_dict(),
                           SWEEP, {}),
}


@pytest.mark.parametrize("name", SIMULATE)
def test_simulations_take_a_prior_first_and_the_loose_form_means_the_same(name):
    fn, prior, kw = SIMULATE[name]
    sw2 = prior.sigma_w2.tolist()
    _same(fn(prior, **kw), fn("tanh", sw2, 0.05, keep_rate=0.9, **kw))
    with pytest.raises(ParameterError, match="not both"):
        fn(prior, sw2, **kw)


def test_experiments_over_keep_rates_take_a_prior():
    kw = {"widths": (20,), "keep_rates": (1.0, 0.9), "networks": 3, "pairs": 2, "depth": 6}
    a = correlation_scale_fidelity(NetworkPrior.build("tanh", 2.0, 0.05), **kw)
    b = correlation_scale_fidelity("tanh", 2.0, 0.05, **kw)
    _same([r.to_dict() for r in a], [r.to_dict() for r in b])
    kw = {"keep_rates": (0.9,), "width": 20, "depth": 6, "networks": 3, "batch_size": 8}
    a = backprop_depth_scales(NetworkPrior.build("tanh", [1.5], 0.05), **kw)
    b = backprop_depth_scales("tanh", [1.5], 0.05, **kw)
    _same([r.to_dict() for r in a], [r.to_dict() for r in b])
    kw = {"width": 20, "depth": 8, "networks": 3, "batch_size": 8}
    a = covariance_transient(NetworkPrior.build("tanh", [1.5], 0.05, keep_rate=0.9), **kw)
    b = covariance_transient("tanh", [1.5], 0.05, keep_rate=0.9, **kw)
    _same([r.to_dict() for r in a], [r.to_dict() for r in b])


def test_forward_fits_have_error_bars_matching_the_seed_to_seed_scatter():
    """The jackknife error of xi_c_fit against the scatter of the fit over 16 independent seeds."""
    prior = NetworkPrior.build("tanh", 1.5, 0.05)
    runs = [simulate_forward(prior, width=100, depth=15, networks=8, pairs=8, seed=s, q0=0.8) for s in range(16)]
    assert set(runs[0].fits) == set(FIT_KEYS)
    assert set(FIT_KEYS) <= set(runs[0].to_dict())
    scatter = np.std([r.xi_c_fit for r in runs], ddof=1)
    jack = np.median([r.xi_c_fit_err for r in runs])
    assert 0.5 < scatter / jack < 2.0, (scatter, jack)
    few = simulate_forward(prior, width=100, depth=15, networks=2, pairs=8, q0=0.8)
    assert math.isnan(few.xi_c_fit_err)  # no error bar from 2 networks, and it says NaN rather than 0


def test_advice_takes_a_prior_and_warns_when_not_exact():
    relu = NetworkPrior.build("relu", 1.0, 0.0, keep_rate=0.8)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AdviceWarning)
        exact = critical_init(relu)  # no warning: exact
    assert exact.exact and exact.warning is None and exact.critical
    assert exact == critical_init("relu", keep_rate=0.8)
    with pytest.raises(ParameterError, match="not both"):
        critical_init(relu, keep_rate=0.8)
    tanh = NetworkPrior.build("tanh", 1.0, 0.05, keep_rate=0.9)
    with pytest.warns(AdviceWarning, match="not an exact critical initialisation"):
        r = critical_init(tanh, sigma_b2=0.05)
    assert not r.exact and r.warning is not None
    # one meaning of "critical": chi_1 = 1, the engine's phase; and where that line sits for this noise
    phase = str(mean_field(tanh.replace(sigma_w2=r.sigma_w2)).phase)
    assert r.critical == (phase == "critical")
    assert r.critical_sigma_w2 == critical_sigma_w2(tanh)
    assert float(mean_field(tanh.replace(sigma_w2=r.critical_sigma_w2)).chi1) == pytest.approx(1.0, abs=1e-9)


def test_advice_warns_on_a_search_bound():
    with pytest.warns(AdviceWarning, match="bound of the search"):
        r = critical_init("relu", noise_add=0.3)
    assert r.on_boundary and "bound" in r.warning


def test_advice_search_takes_a_prior():
    tanh = NetworkPrior.build("tanh", 1.0, 0.0, keep_rate=0.9)
    assert maximize_xi_c(tanh, sigma_b2=0.05) == maximize_xi_c("tanh", sigma_b2=0.05, keep_rate=0.9)
    assert maximize_depth_result(tanh, sigma_b2=0.05) == maximize_depth_result("tanh", sigma_b2=0.05,
                                                                               keep_rate=0.9)


def test_extra_noise_reaches_every_room():
    prior = NetworkPrior.build("tanh", 1.6, 0.05, extra_noise=UniformDropout(0.5))
    assert float(prior.mu2) == pytest.approx(1 + 0.25 / 3)
    assert float(mean_field(prior).q_star) > float(mean_field("tanh", 1.6, 0.05).q_star)  # mu2 > 1 in the q-map
    ens = Ensemble.from_prior(prior, 10)
    assert ens.noise.extra == prior.noise.extra
    assert "uniform_dropout" in simulate_forward(prior, width=10, depth=2, networks=1, pairs=1).params
    with pytest.warns(AdviceWarning):
        assert "uniform_dropout 0.5" in critical_init(prior, sigma_b2=0.05).explanation
    assert deepprop.UniformDropout is UniformDropout


def test_subpackages_are_attributes_after_a_plain_import():
    """README names functions by dotted path (deepprop.data.load_dataset, deepprop.report.verdict): after a
    plain ``import deepprop`` each subpackage loads on first use, and an unknown name is still refused."""
    import subprocess
    import sys

    code = ("import deepprop; assert callable(deepprop.data.load_dataset); assert callable(deepprop.report.verdict);"
            "assert 'theory' in dir(deepprop)\ntry:\n    deepprop.nonexistent\nexcept AttributeError as e:\n"
            "    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "no attribute 'nonexistent'" in out.stdout


def test_priors_and_activations_print_their_numbers_not_function_addresses():
    import deepprop

    text = repr(deepprop.NetworkPrior.build("tanh", 1.5, 0.05, keep_rate=0.9))
    assert text == "NetworkPrior('tanh', sigma_w2=1.5, sigma_b2=0.05, keep_rate=0.9, noise_mult=0, noise_add=0)"
    assert repr(deepprop.get_activation("relu")) == "Activation('relu')"


def test_forward_results_and_advice_are_tables_with_short_reprs():
    """simulate_forward and critical_init results give a DataFrame (one row per layer / per call) and a repr
    of a line; the numbers in them are the engine's (ReLU with keep rate 0.8: sigma_w2 = 2 rho = 1.6)."""
    import deepprop

    r = deepprop.simulate_forward("tanh", 2.5, 0.05, width=64, depth=6, networks=2, pairs=2)
    frame = r.to_dataframe()
    assert list(frame.columns) == ["layer", "q", "q_err", "c", "c_err", "q_theory", "c_theory"] and len(frame) == 7
    assert frame.attrs["xi_c"] == pytest.approx(float(deepprop.mean_field("tanh", 2.5, 0.05).xi_c))
    assert "\n" not in repr(r) and len(repr(r)) < 120
    advice = deepprop.critical_init("relu", keep_rate=0.8)
    row = advice.to_dataframe().iloc[0]
    assert row["sigma_w2"] == pytest.approx(1.6) and row["keep_rate"] == 0.8
    assert "\n" not in repr(advice) and len(repr(advice)) < 200
