"""A sweep's network travels as a prior: its config holds a base prior plus grid axes, and the store records
it as JSON (meta ``prior``); a store written before that reads the same prior from its configuration."""

from __future__ import annotations

import sqlite3

import pytest

from deepprop import NetworkPrior, UniformDropout
from deepprop.cli.main import main
from deepprop.sweep.runner import store_prior
from deepprop.sweep.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SWEEP = ["--dataset", "synthetic", "--n-train", "32", "--n-test", "16", "--width", "4", "--depths", "2",
         "--sigma-w2", "1,2.5", "--keep-rate", "0.9,1", "--activation", "relu", "--sigma-b2", "0.1",
         "--noise-mult", "0.2", "--noise-add", "0.05", "--steps", "2", "--batch-size", "8", "--quiet"]
EXPECTED = {  # what the command line above says, typed out
    "base": {"activation": "relu", "sigma_w2": 1.0, "sigma_b2": 0.1, "keep_rate": 0.9, "noise_mult": 0.2,
             "noise_add": 0.05, "extra_noise": []},
    "axes": {"sigma_w2": [1.0, 2.5], "keep_rate": [0.9, 1.0]},
}


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    path = tmp_path_factory.mktemp("prior") / "s.db"
    assert main(["sweep", "run", "--store", str(path), *SWEEP]) == 0
    return path


def test_store_records_the_sweeps_prior_as_json(store):
    with Store(store, create=False) as s:
        assert s.get_meta("prior") == EXPECTED
        rows = s.frame()
    assert store_prior(store) == EXPECTED
    # every network's row is the base prior at one cell of the axes
    assert sorted(set(zip(rows["sigma_w2"], rows["keep_rate"], strict=True))) == [
        (1.0, 0.9), (1.0, 1.0), (2.5, 0.9), (2.5, 1.0)]
    for name in ("sigma_b2", "noise_mult", "noise_add"):
        assert set(rows[name]) == {EXPECTED["base"][name]}


def test_a_store_without_the_prior_reads_it_from_its_config(store, tmp_path):
    old = tmp_path / "old.db"
    old.write_bytes(store.read_bytes())
    with sqlite3.connect(old) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'prior'")
    with Store(old, create=False) as s:
        assert s.get_meta("prior") is None
    assert store_prior(old) == EXPECTED
    assert main(["sweep", "status", str(old), "--json"]) == 0


def test_prior_record_round_trips_with_extra_noise():
    prior = NetworkPrior.build("erf", [1.0, 2.0], 0.3, keep_rate=0.8, noise_mult=0.1,
                               extra_noise=UniformDropout(0.5))
    record = prior.record()
    assert record["extra_noise"] == [{"kind": "UniformDropout", "value": 0.5}]
    again = NetworkPrior.from_record(record)
    assert again.record() == record
    # mu2 of the restored prior, by hand: 1/rho * (1 + s^2) * (1 + a^2/3)
    assert float(again.mu2) == pytest.approx(1 / 0.8 * 1.01 * (1 + 0.25 / 3), rel=1e-12)


def test_noise_of_kinds_places_the_standard_ones():
    from deepprop import Dropout, GaussianAdditive, GaussianMultiplicative, Noise, ParameterError

    noise = Noise.of(GaussianAdditive(0.3), Dropout(0.8), UniformDropout(0.5), GaussianMultiplicative(0.1))
    assert (float(noise.keep_rate), float(noise.noise_mult), float(noise.noise_add)) == (0.8, 0.1, 0.3)
    assert [type(k).__name__ for k in noise.extra] == ["UniformDropout"]
    assert float(noise.mu2) == pytest.approx(1 / 0.8 * 1.01 * (1 + 0.25 / 3), rel=1e-12)  # by hand
    assert float(noise.add_var) == pytest.approx(0.09, rel=1e-12)
    assert Noise.of() == Noise()
    with pytest.raises(ParameterError, match="keep_rate"):
        Noise.of(Dropout(0.8), Dropout(0.9))
