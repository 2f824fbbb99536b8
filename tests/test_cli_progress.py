"""Progress: long commands draw an overall bar on stderr; --quiet (accepted by every command) silences it."""

from __future__ import annotations

import pytest

from deepprop.cli.main import _leaves, build_parser, main

PHASE = ["phase", "--sigma-w2", "1:4:8", "--sigma-b2", "0:0.3:4", "--block-points", "8"]
SWEEP = ["--dataset", "synthetic", "--n-train", "64", "--n-test", "16", "--width", "4", "--depths", "2,3",
         "--sigma-w2", "1,2", "--steps", "3", "--batch-size", "8"]


def test_every_command_accepts_quiet():
    leaves = _leaves(build_parser())
    assert len(leaves) >= 14
    assert all("--quiet" in leaf._option_string_actions for leaf in leaves), [leaf.prog for leaf in leaves]


def test_the_parser_resolves_quiet_into_progress():
    # every command reads args.progress: --quiet is resolved by the parser, not by a helper each command calls
    for leaf in _leaves(build_parser()):
        action = leaf._option_string_actions["--quiet"]
        assert (action.dest, action.default, action.const) == ("progress", True, False), leaf.prog
    parser = build_parser()
    point = ["point", "--sigma-w2", "1.5", "--sigma-b2", "0.05"]
    assert parser.parse_args(point).progress is True
    quiet = parser.parse_args([*point, "--quiet"])
    assert quiet.progress is False and not hasattr(quiet, "quiet")


@pytest.mark.parametrize("quiet", [False, True])
def test_phase_blocks_bar_and_quiet(tmp_path, capsys, quiet):
    argv = [*PHASE, "--out", str(tmp_path / "g.csv"), *(["--quiet"] if quiet else [])]
    assert main(argv) == 0
    captured = capsys.readouterr()
    err = captured.err
    assert "wrote" in captured.out  # what was written is the command's output, --quiet or not
    if quiet:
        assert err == ""
    else:
        assert "phase grid" in err and "4/4" in err  # 8 x 4 points in blocks of 2 rows


@pytest.mark.parametrize("quiet", [False, True])
def test_sweep_bar_and_quiet(tmp_path, capsys, quiet):
    argv = ["sweep", "run", "--store", str(tmp_path / "s.db"), *SWEEP, *(["--quiet"] if quiet else [])]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "4/4 done" in captured.out
    assert (captured.err == "") if quiet else ("sweep" in captured.err and "4/4" in captured.err)


@pytest.mark.parametrize("quiet", [False, True])
def test_gradients_bar_counts_layers_even_in_one_chunk(capsys, quiet):
    # one chunk of two sigma_w2 values, depth 6: 3 x 6 layer steps (forward, backward, statistics)
    argv = ["simulate", "gradients", "--activation", "tanh", "--sigma-w2", "1.0", "2.5", "--sigma-b2", "0.05",
            "--width", "8", "--depth", "6", "--networks", "2", "--dataset", "synthetic",
            *(["--quiet"] if quiet else [])]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert (err == "") if quiet else ("gradients" in err and "18/18" in err)
