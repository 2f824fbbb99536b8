"""The engine's command line: the exact contract of the issue, errors, and exports."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from deepprop.cli.main import main
from deepprop.theory.meanfield import critical_sigma_w2, mean_field

KEYS = {"q_star", "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad", "phase", "max_depth"}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_point_json_contract(capsys):
    code, out, _ = run(
        capsys,
        "point",
        "--activation",
        "tanh",
        "--sigma-w2",
        "2.5",
        "--sigma-b2",
        "0.05",
        "--keep-rate",
        "0.98",
        "--json",
    )
    assert code == 0
    data = json.loads(out)
    assert KEYS <= set(data)
    ref = mean_field("tanh", 2.5, 0.05, keep_rate=0.98)
    assert data["xi_c"] == pytest.approx(float(ref.xi_c), rel=1e-12)
    assert data["c_star"] == pytest.approx(float(ref.c_star), rel=1e-12)
    assert data["phase"] == "chaotic"


def test_point_table_and_undefined_values(capsys):
    code, out, _ = run(capsys, "point", "--activation", "relu", "--sigma-w2", "3", "--sigma-b2", "0.05")
    assert code == 0 and "unbounded" in out and "note:" in out
    code, out, _ = run(capsys, "point", "--activation", "relu", "--sigma-w2", "3", "--sigma-b2", "0.05", "--json")
    data = json.loads(out)  # strict JSON: no NaN / Infinity tokens
    assert data["phase"] == "unbounded" and data["q_star"] is None and data["xi_c"] is None


def test_noise_options(capsys):
    _, out, _ = run(
        capsys, "point", "--activation", "relu", "--sigma-w2", "1.6", "--sigma-b2", "0", "--keep-rate", "0.8", "--json"
    )
    assert json.loads(out)["c_star"] == pytest.approx(0.47280, abs=5e-6)
    _, out, _ = run(
        capsys,
        "point",
        "--activation",
        "tanh",
        "--sigma-w2",
        "2",
        "--sigma-b2",
        "0.05",
        "--noise-mult",
        "0.3",
        "--noise-add",
        "0.1",
        "--json",
    )
    ref = mean_field("tanh", 2, 0.05, noise_mult=0.3, noise_add=0.1)
    assert json.loads(out)["xi_c"] == pytest.approx(float(ref.xi_c), rel=1e-12)


def test_critical_json(capsys):
    code, out, _ = run(capsys, "critical", "--activation", "tanh", "--sigma-b2", "0.05", "--json")
    assert code == 0
    assert json.loads(out)["sigma_w2"] == pytest.approx(1.7610, abs=5e-5)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["point", "--sigma-w2", "-1", "--sigma-b2", "0"], "--sigma-w2"),
        (["point", "--sigma-w2", "nan", "--sigma-b2", "0"], "--sigma-w2"),
        (["point", "--sigma-w2", "1", "--sigma-b2", "inf"], "--sigma-b2"),
        (["point", "--sigma-w2", "1", "--sigma-b2", "0", "--keep-rate", "0"], "--keep-rate"),
        (["point", "--sigma-w2", "1", "--sigma-b2", "0", "--keep-rate", "1.5"], "--keep-rate"),
        (["point", "--activation", "tanhh", "--sigma-w2", "1", "--sigma-b2", "0"], "--activation"),
        (["point", "--sigma-w2", "1", "--sigma-b2", "0", "--noise-mult", "-0.1"], "--noise-mult"),
        (["phase", "--sigma-w2", "1:4", "--sigma-b2", "0:0.3:3", "--out", "x.csv"], "--sigma-w2"),
        (["phase", "--sigma-w2", "1:4:0", "--sigma-b2", "0:0.3:3", "--out", "x.csv"], "--sigma-w2"),
        (["phase", "--sigma-w2", "1:4:3", "--sigma-b2", "-1:0.3:3", "--out", "x.csv"], "--sigma-b2"),
        (["phase", "--sigma-w2", "1:4:3", "--sigma-b2", "0:0.3:3", "--out", "x.txt"], "--out"),
        (["critical"], "--sigma-b2"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert out == ""


def test_installed_command_has_no_traceback_on_bad_input():
    proc = subprocess.run(
        [sys.executable, "-m", "deepprop", "point", "--sigma-w2", "-2", "--sigma-b2", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--sigma-w2" in proc.stderr and "Traceback" not in proc.stderr


def test_phase_csv_is_tidy(tmp_path, capsys):
    out = tmp_path / "grid.csv"
    code, _, _ = run(
        capsys, "phase", "--activation", "tanh", "--sigma-w2", "1:4:7", "--sigma-b2", "0:0.3:4", "--out", str(out)
    )
    assert code == 0
    df = pd.read_csv(out)
    assert list(df.columns[:10]) == [
        "sigma_w2",
        "sigma_b2",
        "q_star",
        "c_star",
        "chi1",
        "chi_c",
        "xi_q",
        "xi_c",
        "xi_grad",
        "max_depth",
    ]
    assert "phase" in df.columns and len(df) == 28
    np.testing.assert_allclose(sorted(set(df.sigma_w2)), np.linspace(1, 4, 7))  # inclusive like linspace
    row = df[(df.sigma_w2 == 2.5) & (df.sigma_b2 == 0.1)].iloc[0]
    assert row.xi_c == pytest.approx(float(mean_field("tanh", 2.5, 0.1).xi_c), rel=1e-8)


def test_phase_netcdf_roundtrip(tmp_path, capsys):
    out = tmp_path / "grid.nc"
    code, _, _ = run(
        capsys, "phase", "--sigma-w2", "1:3:5", "--sigma-b2", "0.05", "--keep-rate", "0.9", "--out", str(out)
    )
    assert code == 0
    ds = xr.open_dataset(out)
    assert ds["xi_c"].dims == ("sigma_w2", "sigma_b2")
    expected = mean_field("tanh", np.linspace(1, 3, 5), 0.05, keep_rate=0.9).xi_c
    np.testing.assert_allclose(ds["xi_c"].values[:, 0], expected, rtol=1e-12)
    assert ds.attrs["keep_rate"] == 0.9
    ds.close()


def test_netcdf4_roundtrip_every_variable(tmp_path):
    """The .nc file is NetCDF4 (HDF5 signature), and every variable, coordinate and attribute reads back
    equal, the phase labels as str (not bytes); the grid has NaN (unbounded q*) and inf (critical xi_c)."""
    from deepprop.grid_export import export
    from deepprop.theory.grid import phase_diagram

    ds = phase_diagram("relu", [0.5, 2.0, 3.0], [0.0, 0.1], keep_rate=[1.0, 0.8], show_progress=False)
    assert {"ordered", "critical", "unbounded"} <= set(ds["phase"].values.ravel())
    assert np.isnan(ds["q_star"].values).any() and np.isinf(ds["xi_c"].values).any()
    path = export(ds, tmp_path / "grid.nc")
    assert path.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # NetCDF4 = HDF5, not the NetCDF3 "CDF\x01"
    with xr.open_dataset(path) as back:
        back.load()
    assert set(back.data_vars) == set(ds.data_vars)
    for name in ds.data_vars:
        assert back[name].dims == ds[name].dims
        if name == "phase":
            labels = back[name].values
            assert all(isinstance(v, str) for v in labels.ravel())
            np.testing.assert_array_equal(labels.astype(str), ds[name].values.astype(str))
        else:
            np.testing.assert_array_equal(back[name].values, ds[name].values)  # bitwise, NaN and inf too
        assert back[name].attrs.get("description") == ds[name].attrs.get("description")
    for coord in ds.coords:
        np.testing.assert_array_equal(back[coord].values, ds[coord].values)
    assert back.attrs == ds.attrs
    assert not list(tmp_path.glob(".*part*"))  # the temporary file was renamed, not left behind


def test_netcdf_without_io_extra_names_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    code, out, err = run(capsys, "phase", "--sigma-w2", "1:2:2", "--sigma-b2", "0", "--out", str(tmp_path / "g.nc"))
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "pip install 'deepprop[io]'" in err
    assert not (tmp_path / "g.nc").exists()


def test_phase_diagram_dataset_labels():
    from deepprop.theory.grid import phase_diagram

    ds = phase_diagram("tanh", np.linspace(1, 3, 3), [0.0, 0.1], keep_rate=[1.0, 0.9])
    assert ds["c_star"].dims == ("sigma_w2", "sigma_b2", "keep_rate")
    assert float(ds["c_star"].sel(sigma_w2=2.0, sigma_b2=0.1, keep_rate=0.9)) == pytest.approx(
        float(mean_field("tanh", 2.0, 0.1, keep_rate=0.9).c_star), rel=1e-12
    )
    assert float(critical_sigma_w2("tanh", 0.05)) < 2.0


def test_figures_quick(tmp_path, capsys):
    code, out, _ = run(capsys, "figures", "--out", str(tmp_path), "--quick")
    assert code == 0
    names = sorted(p.name for p in tmp_path.glob("*.png"))
    assert names == ["fig1_phase_diagram.png", "fig2_depth_scales.png", "fig3_dropout.png"]
    assert all((tmp_path / n).stat().st_size > 20_000 for n in names)


def test_critical_maximize_depth_is_a_local_maximum_of_xi_c(capsys):
    code, out, _ = run(capsys, "critical", "--activation", "tanh", "--sigma-b2", "0.05", "--keep-rate", "0.9",
                       "--maximize-depth", "--json")
    assert code == 0
    best = json.loads(out)
    assert best["sigma_b2"] == 0.05
    around = mean_field("tanh", best["sigma_w2"] * np.array([0.98, 1.0, 1.02]), 0.05, keep_rate=0.9).xi_c
    assert around[1] == pytest.approx(best["xi_c"], rel=1e-9)
    assert around[1] >= around[0] and around[1] >= around[2]


def test_phase_grid_resumes_from_saved_blocks(tmp_path, monkeypatch):
    import deepprop.grid_export as grid

    sw2, sb2 = np.linspace(1, 4, 9), np.linspace(0, 0.3, 4)
    whole = grid.phase_diagram("tanh", sw2, sb2, keep_rate=0.95)
    first = grid.phase_diagram_resumable("tanh", sw2, sb2, work_dir=tmp_path, block_points=12, keep_rate=0.95)
    xr.testing.assert_allclose(first[["xi_c", "c_star"]], whole[["xi_c", "c_star"]])
    assert not list(tmp_path.glob(".deepprop-phase-*"))  # cleaned up after success
    # A run interrupted after its first block (rows 0-2) leaves that block saved.
    real, calls = grid.phase_diagram, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(grid, "phase_diagram", interrupted)
    with pytest.raises(KeyboardInterrupt):
        grid.phase_diagram_resumable("tanh", sw2, sb2, work_dir=tmp_path, block_points=12, keep_rate=0.95)
    monkeypatch.setattr(grid, "phase_diagram", real)
    (block,) = grid.block_folder(tmp_path, "tanh", sw2, sb2, keep_rate=0.95).glob("block*.npz")
    with np.load(block) as data:
        saved = {name: data[name] for name in data.files}
    saved["xi_c"] = np.full((3, 4), -7.0)  # marker: a recomputed block could not contain it
    np.savez(block, **saved)
    resumed = grid.phase_diagram_resumable("tanh", sw2, sb2, work_dir=tmp_path, block_points=12, keep_rate=0.95)
    assert (resumed["xi_c"].values[:3] == -7.0).all()
    np.testing.assert_allclose(resumed["xi_c"].values[3:], whole["xi_c"].values[3:], rtol=1e-12)
    assert resumed.attrs["keep_rate"] == 0.95
