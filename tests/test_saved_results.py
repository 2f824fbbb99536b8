"""What a command finds on disk from an earlier run: checkpoints, saved claims, output folders, partial stores.

* A checkpoint named by the user is a file (``--checkpoint grad.json`` never becomes a folder); a corrupted
  or foreign one is refused, a foreign folder is never written into or deleted.
* A corrupted saved claim under ``reproduce --out`` is discarded with a one-line warning and recomputed.
* ``reproduce --out`` writes into an empty or new folder or an earlier report; anything else needs --force;
  no parent folder is created.
* ``sweep fit`` says how many cells are complete, fits only those and warns on a partial store; NULL
  accuracies and a sweep where nothing trained give fits that are null with a reason, never "4/4 trainable".
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from deepprop.checkpoint import Checkpoint
from deepprop.cli.main import main
from deepprop.errors import CheckpointError
from deepprop.jsonout import loads_strict
from deepprop.sweep.analysis import fit_laws
from deepprop.sweep.config import from_mapping
from deepprop.sweep.runner import plan, run_sweep
from deepprop.sweep.store import Store

pytestmark = pytest.mark.usefixtures("one_torch_thread")

GRAD = ["simulate", "gradients", "--sigma-w2", "1.0", "2.0", "--sigma-b2", "0.05", "--width", "8", "--depth", "6",
        "--networks", "2", "--dataset", "synthetic", "--batch-size", "8", "--chunk", "1", "--quiet", "--json"]


def test_gradient_checkpoint_is_a_file_and_resumes(tmp_path, capsys):
    ck = tmp_path / "grad.json"
    assert main([*GRAD, "--checkpoint", str(ck)]) == 0
    first = loads_strict(capsys.readouterr().out)
    assert ck.is_file() and not ck.is_dir()
    doc = json.loads(ck.read_text())
    assert doc["deepprop_checkpoint"] == 1 and len(doc["units"]) == 2  # one unit per chunk of sigma_w2
    assert main([*GRAD, "--checkpoint", str(ck)]) == 0  # resumed: every chunk from the file
    assert loads_strict(capsys.readouterr().out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grad.json"]  # nothing else: no folder, no temp file


def test_checkpoint_never_touches_what_is_not_ours(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(CheckpointError, match="not a deepprop checkpoint"):
        Checkpoint(folder, {"a": 1})
    assert (folder / "thesis.tex").read_text() == "years of work"
    notes = tmp_path / "notes.json"
    notes.write_text('{"todo": 1}')
    with pytest.raises(CheckpointError, match="not a deepprop checkpoint"):
        Checkpoint(notes, {"a": 1})
    assert notes.read_text() == '{"todo": 1}'


def test_corrupted_checkpoint_units_are_refused_or_dropped(tmp_path):
    ck = Checkpoint(tmp_path / "c", {"a": 1})
    ck.save("good", {"x": 1})
    ck.save("grid", {"q": np.arange(3.0)})
    (tmp_path / "c" / "good.json").write_text('{"key": "good", "val')
    (tmp_path / "c" / "grid.npz").write_bytes(b"PK\x03\x04 not a zip")
    again = Checkpoint(tmp_path / "c", {"a": 1})
    with pytest.raises(CheckpointError, match="good.json"):
        again["good"]
    dropped = dict(again.drop_unreadable())
    assert set(dropped) == {"good", "grid"} and list(again.keys()) == []
    (tmp_path / "c" / "signature.json").write_text("{")
    with pytest.raises(CheckpointError, match="signature"):
        Checkpoint(tmp_path / "c", {"a": 1})


def test_file_checkpoint_signature_and_corruption(tmp_path):
    path = tmp_path / "k.json"
    ck = Checkpoint(path, {"s": 1})
    ck.save("u", [1, 2])
    assert Checkpoint(path, {"s": 1})["u"] == [1, 2]
    other = Checkpoint(path, {"s": 2})  # another computation: sees nothing, then replaces the file
    assert "u" not in other
    other.save("v", 3)
    assert list(Checkpoint(path, {"s": 2}).keys()) == ["v"] and "u" not in Checkpoint(path, {"s": 1})
    path.write_text("{broken")
    with pytest.raises(CheckpointError, match="k.json"):
        Checkpoint(path, {"s": 2})
    with pytest.raises(Exception, match="does not exist"):
        Checkpoint(tmp_path / "no" / "k.json", {})
    assert not (tmp_path / "no").exists()


# ---- reproduce: its output folder and its saved claims ------------------------------------------------------


REPRO = ["reproduce", "--tier", "smoke", "--only", "001-fig1", "--quiet", "--json"]


def test_corrupted_saved_claim_is_recomputed_with_a_warning(tmp_path, capsys):
    out = tmp_path / "r"
    assert main([*REPRO, "--out", str(out)]) == 0
    first = loads_strict(capsys.readouterr().out)
    saved = out / "claims" / "smoke" / "001-fig1.json"
    assert saved.is_file()
    saved.write_text('{"key": "001-fig1", "value": {"id": "001-fig1", "verd')  # truncated by a crash
    assert main([*REPRO, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    again = loads_strict(captured.out)
    warnings = [line for line in captured.err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "001-fig1" in warnings[0] and "corrupted" in warnings[0], captured.err
    assert warnings[0].startswith("deepprop reproduce: warning:")
    assert again["claims"] == first["claims"]
    assert json.loads(saved.read_text())["value"]["id"] == "001-fig1"  # recomputed and saved again
    saved.write_text(json.dumps({"key": "001-fig1", "value": {"something": "else"}}))  # not a claim row
    assert main([*REPRO, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "not a claim row" in captured.err and loads_strict(captured.out)["claims"] == first["claims"]


def test_reproduce_out_rule(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "index.html").write_text("<p>my page</p>")
    assert main([*REPRO, "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert "--out" in err and "--force" in err and err.count("\n") == 1
    assert (mine / "index.html").read_text() == "<p>my page</p>" and sorted(p.name for p in mine.iterdir()) == [
        "index.html"]
    assert main([*REPRO, "--out", str(mine), "--force"]) == 0  # asked for: written into
    capsys.readouterr()
    assert (mine / "claims.json").is_file()
    assert main([*REPRO, "--out", str(mine)]) == 0  # now it holds a deepprop report: resumed without --force
    capsys.readouterr()
    assert main([*REPRO, "--out", str(tmp_path / "a" / "b")]) == 2  # never a parent folder
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "a").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*REPRO, "--out", str(empty)]) == 0
    capsys.readouterr()


# ---- sweep fit on partial and degenerate stores ------------------------------------------------------------


GRID = {"dataset": "synthetic", "n_train": 32, "n_test": 16, "width": 4, "depths": "2,3", "sigma_w2": "1,2",
        "steps": 20, "batch_size": 8, "lr": 0.1}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("fit") / "s.db"
    run_sweep(from_mapping(GRID), path, progress=False)
    return path


def _copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes())
    return dst


def test_fit_on_a_partial_store_warns_and_fits_complete_cells(finished, tmp_path, capsys):
    store = _copy(finished, tmp_path / "s.db")
    bigger = from_mapping({**GRID, "depths": "2,3,4"})  # as if a runner had planned depth 4 and not finished it
    with Store(store) as s:
        s.set_meta("config", bigger.to_dict())
        s.set_meta("planned_keys", [j.key for j in plan(bigger)])
    assert main(["sweep", "fit", str(store), "--json", "--threshold", "0.3"]) == 0
    captured = capsys.readouterr()
    d = loads_strict(captured.out)
    assert d["complete"] is False and d["cells_complete"] == 4 and d["cells_planned"] == 6
    assert d["networks_done"] == 4 and d["networks_planned"] == 6 and d["cells"] == 4
    assert d["warning"] and "partial store" in d["warning"]
    warning = [line for line in captured.err.splitlines() if line]
    assert len(warning) == 1 and "partial store" in warning[0] and "4/6" in warning[0]
    st = loads_strict(_run(capsys, ["sweep", "status", str(store), "--json"]))
    assert st["complete"] is False and st["incomplete_cells"] == 2 and st["done"] == 4 and st["total"] == 6


def test_fit_on_a_store_with_no_complete_cell_is_refused(finished, tmp_path, capsys):
    store = _copy(finished, tmp_path / "s.db")
    other = from_mapping({**GRID, "seeds": "0,1"})  # every cell now misses its second seed
    with Store(store) as s:
        s.set_meta("config", other.to_dict())
        s.set_meta("planned_keys", [j.key for j in plan(other)])
    assert main(["sweep", "fit", str(store)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no complete cell" in err[0]


def _run(capsys, argv) -> str:
    assert main(argv) == 0
    return capsys.readouterr().out


def test_null_accuracies_are_not_trainable(finished, tmp_path, capsys):
    store = _copy(finished, tmp_path / "s.db")
    conn = sqlite3.connect(store)
    conn.execute("UPDATE runs SET train_accuracy = NULL, test_accuracy = NULL")
    conn.commit()
    conn.close()
    d = loads_strict(_run(capsys, ["sweep", "fit", str(store), "--json"]))
    assert d["trainable_cells"] == 0 and d["cells"] == 0
    for fit in d["fits"]:
        assert fit["fraction_correct"] is None and fit["reason"]
    text = _run(capsys, ["sweep", "fit", str(store)])
    assert "0/0 cells trainable" in text and "no fit" in text


def test_nothing_above_chance_gives_no_fit(finished):
    df = Store(finished, create=False).frame()
    df["diverged"] = True  # every network diverged: each cell sits at chance
    fits, cells, thr = fit_laws(df, n_classes=4)
    assert not cells["trainable"].any() and len(cells) == 4
    assert all(f.fraction_correct is None and "above chance" in f.reason for f in fits)
    df = Store(finished, create=False).frame()
    df["train_accuracy"] = 0.25  # exactly chance for 4 classes
    fits, cells, thr = fit_laws(df, n_classes=4)
    assert not cells["trainable"].any() and fits[1].constants["a"] is None
