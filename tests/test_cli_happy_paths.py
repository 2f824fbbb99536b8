"""Every command's happy path, generated from the CLI's own parser tree: a command cannot be added without one.

:data:`HAPPY` holds one toy-size case per leaf command (``deepprop point``, ``deepprop sweep run``, ...).
``test_every_command_has_a_happy_path`` walks ``deepprop.cli.main.build_parser()`` recursively and fails for
a command without an entry, so a new command comes with its case: add ``("name", "sub"): Happy(...)`` below.

Each case runs in-process twice, as text and with ``--json``, and must exit 0, print nothing on stderr but
progress or warnings, write every file it names in ``writes`` (non-empty), and with ``--json`` print one
object that parses as strict JSON (no NaN / Infinity) and names only files that exist.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from deepprop.cli.main import build_parser, main
from deepprop.jsonout import loads_strict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_SWEEP = ["--dataset", "synthetic", "--n-train", "32", "--n-test", "16", "--width", "4", "--depths", "2,3",
               "--sigma-w2", "1,2", "--steps", "3", "--batch-size", "8", "--quiet"]
MODEL = ("from torch import nn\nclass Net(nn.Sequential):\n    def __init__(self):\n"
         "        super().__init__(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 2))\n")


@dataclass(frozen=True)
class Happy:
    """One command at toy size: ``argv(tmp, run)`` (``run`` is "text" or "json": distinct output names per
    run), the files or folders it must write (relative to ``tmp``; ``{run}`` is substituted), and an
    optional ``check(tmp, run, parsed_json_or_None, stdout)``."""

    argv: Callable[[Path, str], list[str]]
    writes: tuple[str, ...] = ()
    check: Callable[[Path, str, object, str], None] | None = None
    modes: tuple[str, ...] = ("text", "json")  # an expensive command may run once, with --json


def _figures_written(tmp: Path, run: str, data, out: str) -> None:
    names = sorted(p.name for p in (tmp / f"figs-{run}").glob("*.png"))
    assert names == ["fig1_phase_diagram.png", "fig2_depth_scales.png", "fig3_dropout.png"], names
    if data is not None:
        assert sorted(Path(p).name for p in data["figures"]) == names


def _heatmap_has_content(tmp: Path, run: str, data, out: str) -> None:
    """The heatmap is a real figure: PNG, a drawn accuracy grid (many distinct colours), not a blank page."""
    import matplotlib.image as mpimg

    img = mpimg.imread(tmp / f"heat-{run}.png")
    assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 200
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 50  # axes, labels, colour bar, the cells and the xi_c curves
    if data is not None:
        assert Path(data["out"]).name == f"heat-{run}.png"


def _fit_counts(tmp: Path, run: str, data, out: str) -> None:
    if data is not None:
        assert data["cells_complete"] == data["cells_planned"] == 4 and data["complete"] is True
        assert data["warning"] is None and len(data["fits"]) == 3


def _reproduce_rows(tmp: Path, run: str, data, out: str) -> None:
    if data is not None:
        assert [c["id"] for c in data["claims"]] == ["001-fig1"] and Path(data["index"]).is_file()
        assert set(data["counts"]) == {"reproduced", "differs", "undecided", "not run"}  # every verdict, 0 or not
    else:
        assert "001-fig1" in out and "report:" in out


HAPPY: dict[tuple[str, ...], Happy] = {
    ("point",): Happy(lambda t, r: ["point", "--activation", "tanh", "--sigma-w2", "1.5", "--sigma-b2", "0.05"]),
    ("critical",): Happy(lambda t, r: ["critical", "--activation", "tanh", "--sigma-b2", "0.05"]),
    ("phase",): Happy(lambda t, r: ["phase", "--sigma-w2", "1:2:3", "--sigma-b2", "0,0.05", "--out",
                                    str(t / f"grid-{r}.csv"), "--quiet"], writes=("grid-{run}.csv",)),
    ("figures",): Happy(lambda t, r: ["figures", "--out", str(t / f"figs-{r}"), "--quick", "--quiet"],
                        writes=("figs-{run}",), check=_figures_written, modes=("json",)),  # text: test_engine_cli
    ("sweep", "run"): Happy(lambda t, r: ["sweep", "run", "--store", str(t / f"run-{r}.db"), *SMALL_SWEEP],
                            writes=("run-{run}.db",)),
    ("sweep", "status"): Happy(lambda t, r: ["sweep", "status", str(t / "store.db")]),
    ("sweep", "plot"): Happy(lambda t, r: ["sweep", "plot", str(t / "store.db"), "--out", str(t / f"heat-{r}.png")],
                             writes=("heat-{run}.png",), check=_heatmap_has_content),
    ("sweep", "fit"): Happy(lambda t, r: ["sweep", "fit", str(t / "store.db")], check=_fit_counts),
    ("sweep", "export"): Happy(lambda t, r: ["sweep", "export", str(t / "store.db"), "--out", str(t / f"rows-{r}.csv")],
                               writes=("rows-{run}.csv",)),
    ("advise",): Happy(lambda t, r: ["advise", "--activation", "relu", "--keep-rate", "0.8"]),
    ("diagnose",): Happy(lambda t, r: ["diagnose", f"{t / 'model.py'}:Net"]),
    ("simulate", "forward"): Happy(lambda t, r: ["simulate", "forward", "--sigma-w2", "1.5", "--sigma-b2", "0.05",
                                                 "--width", "8", "--depth", "3", "--networks", "2", "--pairs", "2",
                                                 "--quiet"]),
    ("simulate", "gradients"): Happy(lambda t, r: ["simulate", "gradients", "--sigma-w2", "1.0", "2.0",
                                                   "--sigma-b2", "0.05", "--width", "8", "--depth", "6",
                                                   "--networks", "2", "--dataset", "synthetic", "--batch-size",
                                                   "8", "--checkpoint", str(t / f"grad-{r}.json"), "--quiet"]),
    ("simulate", "jacobian"): Happy(lambda t, r: ["simulate", "jacobian", "--sigma-w2", "1.5", "--sigma-b2", "0.05",
                                                  "--width", "8", "--depth", "3", "--quiet"]),
    ("profile",): Happy(lambda t, r: ["profile", f"{t / 'model.py'}:Net", "--input-shape", "4", "--inits", "2",
                                      "--csv", str(t / f"profile-{r}.csv"), "--quiet"], writes=("profile-{run}.csv",)),
    ("reproduce",): Happy(lambda t, r: ["reproduce", "--tier", "smoke", "--only", "001-fig1", "--out",
                                        str(t / f"report-{r}"), "--quiet"],
                          writes=("report-{run}/index.html", "report-{run}/claims.json"), check=_reproduce_rows),
}


def leaf_commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...],
                                                                                        argparse.ArgumentParser]:
    """Every command path of the parser tree that runs something (no sub-commands of its own)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix: parser}
    out = {}
    for name, sub in subs[0].choices.items():
        out.update(leaf_commands(sub, (*prefix, name)))
    return out


LEAVES = leaf_commands(build_parser())


def test_every_command_has_a_happy_path():
    missing = sorted(" ".join(c) for c in set(LEAVES) - set(HAPPY))
    stale = sorted(" ".join(c) for c in set(HAPPY) - set(LEAVES))
    assert not missing, f"commands without a happy-path case in HAPPY: {missing}"
    assert not stale, f"HAPPY names commands the CLI no longer has: {stale}"


def test_every_command_takes_json_and_quiet():
    for command, leaf in LEAVES.items():
        assert "--json" in leaf._option_string_actions, command
        assert "--quiet" in leaf._option_string_actions, command


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A folder with what the cases read: a trained toy store and a model file."""
    tmp = tmp_path_factory.mktemp("happy")
    assert main(["sweep", "run", "--store", str(tmp / "store.db"), *SMALL_SWEEP]) == 0
    (tmp / "model.py").write_text(MODEL)
    return tmp


def _files_named(obj) -> list[str]:
    """Values of keys that name written files in a JSON result."""
    out = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            if k in ("out", "index", "claims_json") and isinstance(v, str):
                out.append(v)
            elif k == "figures" and isinstance(v, list):
                out += [str(p) for p in v]
    return out


@pytest.mark.parametrize("command, mode", [(c, m) for c in sorted(HAPPY) for m in HAPPY[c].modes],
                         ids=lambda v: " ".join(v) if isinstance(v, tuple) else v)
def test_happy_path(workdir, capsys, monkeypatch, command, mode):
    monkeypatch.chdir(workdir)
    case = HAPPY[command]
    argv = case.argv(workdir, mode) + (["--json"] if mode == "json" else [])
    assert tuple(argv[:len(command)]) == command
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, (argv, err)
    assert "Traceback" not in err and "error" not in err.lower(), err
    for rel in case.writes:
        path = workdir / rel.format(run=mode)
        assert path.exists(), f"{' '.join(command)} did not write {path}"
        assert path.is_dir() or path.stat().st_size > 0, path
    data = None
    if mode == "json":
        data = loads_strict(out)  # one strict-JSON object: no NaN / Infinity, nothing else on stdout
        assert isinstance(data, dict)
        for name in _files_named(data):
            assert Path(name).exists(), f"{' '.join(command)} --json names {name}, which does not exist"
    else:
        assert out.strip(), f"{' '.join(command)} printed nothing"
        for word in out.split():
            if word.startswith(str(workdir)) and word.endswith((".png", ".csv", ".html", ".db")):
                assert Path(word).exists(), f"{' '.join(command)} says it wrote {word}"
    if case.check is not None:
        case.check(workdir, mode, data, out)
