"""deepprop reproduce: verdicts, claims.json schema, resume, bad input, and a fast subset end to end."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepprop.cli.main import main
from deepprop.jsonout import loads_strict
from deepprop.report import Tolerance, all_claims, run_report, select, verdict
from deepprop.report.checkpoint import claims_checkpoint
from deepprop.report.registry import REGISTRY, TIERS
from deepprop.report.verdict import DIFFERS, NOT_RUN, REPRODUCED, UNDECIDED, VERDICTS

KEYS = {"id", "kind", "source", "statement", "paper", "ours", "tolerance", "verdict", "why", "margin", "margin_reason",
        "command", "seconds", "figure"}
FAST = "004-closed-forms,004-critical-init,own-engine-accuracy,001-fig1"
REQUIRED_IDS = ["001-fig1", "001-fig2", "001-fig3", "001-fig4", "001-eq17", "001-fig5", "001-fig6", "001-fig7",
                "001-fig8", "004-critical-init", "004-closed-forms", "004-finite-width", "004-vs-he",
                "004-overflow-depth", "002-shared-vs-independent", "002-same-depth-scale", "002-universality",
                "002-trainable-law", "003-jacobian-spectrum", "003-mutual-information", "own-finite-width",
                "own-engine-accuracy"]
QUICK_IDS = ["001-fig1", "001-fig2", "001-fig3", "001-fig3/finite-width", "001-fig4", "001-eq17", "001-fig5/sgd-200",
             "001-fig5/sgd-long", "001-fig5/rmsprop", "001-fig5/cifar10", "001-fig6/rho-0.99", "001-fig6/rho-0.98",
             "001-fig6/rho-0.94", "001-fig7", "001-fig8", "004-critical-init", "004-closed-forms", "004-finite-width",
             "004-vs-he", "004-overflow-depth", "002-shared-vs-independent", "002-same-depth-scale",
             "002-universality", "002-trainable-law", "003-jacobian-spectrum", "003-mutual-information",
             "003-mutual-information/critical-line", "own-finite-width", "own-engine-accuracy"]
"""The 29 ids of the quick tier before issue 20: each is kept (re-labelled by kind)."""
KINDS = {"001-fig3/finite-width": "own", "001-eq17": "own", "002-shared-vs-independent": "own", "004-vs-he": "own",
         "own-finite-width": "own", "own-multiple-vs-budget-width": "own", "004-critical-init": "engine",
         "004-closed-forms": "engine", "003-mutual-information/critical-line": "engine",
         "own-engine-accuracy": "engine", "001-fig5/bound": "paper", "003-mutual-information": "paper"}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


# ---- verdicts: computed from numbers, never written ------------------------------------------------------


def test_registry_has_every_contract_id_with_sizes_for_every_tier():
    claims = all_claims()
    groups = {c.group for c in claims}
    assert set(REQUIRED_IDS) <= groups
    ids = {c.id for c in claims}
    assert set(QUICK_IDS) | {"001-fig5/bound", "own-multiple-vs-budget-width"} <= ids
    assert "full" in TIERS
    for c in claims:
        assert set(TIERS) <= set(c.sizes)
        assert c.tolerance and all(t.source for t in c.tolerance.values())
        assert c.kind in ("paper", "own", "engine")
        assert KINDS.get(c.id, c.kind) == c.kind, c.id
        if c.id.startswith("own-"):
            assert c.kind in ("own", "engine"), c.id


def test_verdict_of_a_real_claim_flips_when_a_measurement_leaves_its_tolerance():
    c = REGISTRY["004-closed-forms"] if REGISTRY else select("004-closed-forms")[0]
    at_target = dict(c.paper)
    assert verdict(at_target, c.paper, c.tolerance).verdict == REPRODUCED
    for name, tol in c.tolerance.items():
        inside = dict(at_target, **{name: c.paper[name] + 0.9 * tol.value})
        outside = dict(at_target, **{name: c.paper[name] + 1.1 * tol.value})
        assert verdict(inside, c.paper, c.tolerance).verdict == REPRODUCED
        res = verdict(outside, c.paper, c.tolerance)
        assert res.verdict == DIFFERS and name in res.why


@pytest.mark.parametrize("kind,ours,err,expected", [
    ("abs", 1.05, None, True), ("abs", 1.2, None, False), ("rel", 1.09, None, True), ("rel", 0.89, None, False),
    ("at_least", 0.95, None, True), ("at_least", 0.85, None, False), ("at_most", 1.09, None, True),
    ("at_most", 1.2, None, False), ("sigma", 1.3, 0.1, True), ("sigma", 1.5, 0.1, False), ("sigma", 1.0, None, False),
])
def test_tolerance_kinds(kind, ours, err, expected):
    value = {"abs": 0.1, "rel": 0.1, "at_least": 0.1, "at_most": 0.1, "sigma": 4.0}[kind]
    tol = {"x": Tolerance(kind, value, "test")}
    measured = {"x": ours} if err is None else {"x": ours, "x_err": err}
    assert (verdict(measured, {"x": 1.0}, tol).verdict == REPRODUCED) is expected


def test_missing_or_nonfinite_measurement_differs():
    tol = {"x": Tolerance("abs", 1.0, "test")}
    for ours in ({}, {"x": math.nan}, {"x": math.inf}, {"x": None}):
        assert verdict(ours, {"x": 0.0}, tol).verdict == DIFFERS
    # unless the claim says this size has nothing to measure it on: then undecided, with the reason
    res = verdict({"x": None, "x_undecided": "no cell beyond the bound"}, {"x": 0.0}, tol)
    assert res.verdict == UNDECIDED and "no cell beyond the bound" in res.why


def test_margins_are_distances_in_standard_errors_and_the_band_between_is_undecided():
    tol = {"x": Tolerance("at_most", 0.1, "test")}
    res = verdict({"x": 0.05, "x_err": 0.01}, {"x": 0.0}, tol)
    assert res.verdict == REPRODUCED and res.margin == pytest.approx(5.0) and res.margin_reason is None
    res = verdict({"x": 0.09, "x_err": 0.01}, {"x": 0.0}, tol)  # 1 SE inside: undecided, never reproduced
    assert res.verdict == UNDECIDED and res.margin == pytest.approx(1.0) and "larger decides it" in res.why
    res = verdict({"x": 0.125, "x_err": 0.01}, {"x": 0.0}, tol)  # 2.5 SE outside, one comparison: differs
    assert res.verdict == DIFFERS and res.margin == pytest.approx(-2.5)
    # the same number as the worst of 12 comparisons: 2 SE is within the Bonferroni band, undecided
    res = verdict({"x": 0.125, "x_err": 0.01, "x_comparisons": 12}, {"x": 0.0}, tol)
    assert res.verdict == UNDECIDED
    assert verdict({"x": 0.14, "x_err": 0.01, "x_comparisons": 12}, {"x": 0.0}, tol).verdict == DIFFERS
    # deterministic numbers have no margin, and say why
    res = verdict({"x": 0.05}, {"x": 0.0}, tol)
    assert res.verdict == REPRODUCED and res.margin is None and "deterministic" in res.margin_reason


def test_bonferroni_rule_keeps_the_false_alarm_rate_of_many_noisy_comparisons():
    """Monte Carlo: 10 unbiased comparisons with unit errors, judged by their worst one, differ in about ALPHA of
    the runs (a 2-sigma rule on each would alarm in ~10 x ALPHA)."""
    from deepprop.report.verdict import ALPHA, worst

    rng = np.random.default_rng(0)
    tol = Tolerance("abs", 0.0, "test")
    alarms, naive, runs = 0, 0, 4000
    for _ in range(runs):
        z = rng.standard_normal(10)
        i = worst(tol, list(z), [1.0] * 10, 0.0)
        assert i == int(np.argmax(np.abs(z)))
        alarms += verdict({"x": float(z[i]), "x_err": 1.0, "x_comparisons": 10}, {"x": 0.0},
                          {"x": tol}).verdict == DIFFERS
        naive += bool(np.abs(z).max() >= 2.0)
    assert alarms / runs < 1.5 * ALPHA < naive / runs / 4


# ---- end to end on a fast subset ------------------------------------------------------------------------


def _load(out: Path) -> dict:
    return loads_strict((out / "claims.json").read_text())


def test_claims_json_schema_and_files(tmp_path):
    out = tmp_path / "rep"
    res = run_report(FAST, "smoke", out, quiet=True)
    doc = _load(out)
    assert len(doc["claims"]) == len(select(FAST)) == len(res.records)
    for key in ("summary", "tier", "device", "counts", "deepprop_version", "seconds_total"):
        assert key in doc
    for row in doc["claims"]:
        assert KEYS <= set(row)
        assert row["verdict"] in VERDICTS
        assert row["kind"] in ("paper", "own", "engine")
        assert row["margin"] is None or isinstance(row["margin"], float)
        assert (row["margin"] is None) == isinstance(row["margin_reason"], str)
        assert isinstance(row["ours"], dict) and row["ours"]
        assert all(v is None or isinstance(v, (int, float)) for v in row["ours"].values())
        assert isinstance(row["seconds"], (int, float)) and row["seconds"] >= 0
        assert row["command"].startswith("deepprop reproduce --tier smoke --only " + row["id"])
        figs = [row["figure"]] if isinstance(row["figure"], str) else row["figure"]
        for f in figs:
            assert not os.path.isabs(f) and (out / f).is_file()
        for d in row.get("data", []):
            assert (out / d).is_file()
    # the critical line is a number in `ours` and it matches the paper's 1.76
    fig1 = next(r for r in doc["claims"] if r["id"] == "001-fig1")
    assert abs(fig1["ours"]["critical_sigma_w2"] - 1.76) < 0.005
    n = len(doc["claims"])
    assert doc["summary"].startswith(f"{doc['counts']['reproduced']} of {n} claims reproduced")
    html = (out / "index.html").read_text()
    assert html.count('class="claim-row"') == n and "http://" not in html and "https://" not in html
    assert doc["summary"] in html


def test_resume_skips_finished_claims_and_force_recomputes(tmp_path):
    out = tmp_path / "rep"
    ids = "004-closed-forms,004-critical-init"
    run_report(ids, "smoke", out, quiet=True)
    first = {r["id"]: r["finished_at"] for r in _load(out)["claims"]}
    run_report(ids, "smoke", out, quiet=True)
    again = {r["id"]: r["finished_at"] for r in _load(out)["claims"]}
    assert again == first
    claims_checkpoint(out, "smoke").discard("004-critical-init")  # as if killed during this claim
    run_report(ids, "smoke", out, quiet=True)
    third = {r["id"]: r["finished_at"] for r in _load(out)["claims"]}
    assert third["004-closed-forms"] == first["004-closed-forms"]
    assert third["004-critical-init"] > first["004-critical-init"]
    run_report(ids, "smoke", out, quiet=True, force=True)
    forced = {r["id"]: r["finished_at"] for r in _load(out)["claims"]}
    assert all(forced[k] > third[k] for k in forced)


def test_sigkill_loses_at_most_the_claim_in_progress(tmp_path):
    # A real run killed while its second claim computes: the first claim survives and is not recomputed.
    out = tmp_path / "rep"
    ids = "004-closed-forms,001-fig2"
    proc = subprocess.Popen([sys.executable, "-m", "deepprop", "reproduce", "--tier", "smoke", "--only", ids,
                             "--out", str(out), "--quiet"], stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    ckpt_dir = out / "claims" / "smoke"
    deadline = time.time() + 120
    while time.time() < deadline and not any(p.name.startswith("004-closed-forms") for p in ckpt_dir.glob("*")):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    ckpt = claims_checkpoint(out, "smoke")
    assert "004-closed-forms" in ckpt
    saved = ckpt["004-closed-forms"]["finished_at"]
    run_report(ids, "smoke", out, quiet=True)
    rows = {r["id"]: r for r in _load(out)["claims"]}
    assert rows["004-closed-forms"]["finished_at"] == saved and "001-fig2" in rows


def test_full_tier_runs_from_the_cli_and_the_first_screen_names_the_tier(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "--tier", "full", "--only", "004-closed-forms,003-mutual-information", "--out",
                 str(out), "--quiet"]) == 0
    doc = _load(out)
    assert doc["tier"] == "full" and {r["tier"] for r in doc["claims"]} == {"full"}
    page = (out / "index.html").read_text()
    first = page[:page.index('id="claims-')]
    assert "Tier: full" in first and "cannot decide" in first and "003-mutual-information" in first


def test_cli_prints_the_table_and_the_index_path(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "--tier", "smoke", "--only", "004-closed-forms", "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out.strip().splitlines()
    assert text[-1] == f"report: {out / 'index.html'}"
    assert any(line.startswith("004-closed-forms") and "reproduced" in line for line in text)
    assert "claims reproduced" in text[-2]


# ---- bad input: one line naming the flag, exit 2, nothing written ----------------------------------------


def _bad(argv, flag, capsys, out: Path):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0], err
    assert not out.exists()


def test_bad_input(tmp_path, capsys):
    import torch

    out = tmp_path / "never"
    base = ["reproduce", "--out", str(out), "--quiet"]
    _bad(base + ["--only", "001-nope"], "--only", capsys, out)
    _bad(base + ["--tier", "huge"], "--tier", capsys, out)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _bad(["reproduce", "--out", str(blocker / "sub"), "--only", "004-closed-forms"], "--out", capsys,
         blocker / "sub")
    empty = tmp_path / "empty"
    empty.mkdir()
    _bad(base + ["--data-dir", str(empty)], "--data-dir", capsys, out)
    _bad(base + ["--data-dir", str(tmp_path / "missing")], "--data-dir", capsys, out)
    if not torch.cuda.is_available():
        _bad(base + ["--device", "cuda"], "--device", capsys, out)


def test_cifar_row_is_not_run_with_the_reason_when_absent(tmp_path):
    from deepprop.report.context import dataset_available

    if dataset_available("cifar10", None):
        pytest.skip("CIFAR-10 is installed here")
    res = run_report("001-fig5/cifar10", "smoke", tmp_path / "rep", quiet=True)
    (row,) = res.records
    assert row["verdict"] == NOT_RUN and "CIFAR-10 not found" in row["why"]


@pytest.mark.slow
def test_smoke_tier_end_to_end(tmp_path):
    """Every claim at toy size: every experiment path runs, none fails (verdicts at this tier are not judged)."""
    out = tmp_path / "rep"
    res = run_report(None, "smoke", out, quiet=True)
    doc = _load(out)
    assert len(doc["claims"]) == len(all_claims()) == len(res.records)
    failed = [r["id"] for r in doc["claims"] if r["verdict"] == NOT_RUN and "CIFAR" not in r["why"]
              and not r["why"].startswith("not implemented")]
    assert not failed, [r["why"] for r in doc["claims"] if r["id"] in failed]
    json.dumps(doc, allow_nan=False)


# ---- rows built on the fidelity measurements ---------------------------------------------------------------

NEW_ROWS = "001-fig3/finite-width,003-mutual-information/critical-line"


def _fit(start, rho, fit, theory, err, reason=None, theory_reason=None):
    from deepprop.simulate.correlation_scale import CorrelationScaleFit

    return CorrelationScaleFit(keep_rate=rho, width=300, start=start, c0=0.99, depth=40, networks=8, xi_c=5.0,
                               c_star=0.5, xi_c_fit=fit, xi_c_fit_err=err, xi_c_fit_reason=reason,
                               xi_c_fit_theory=theory, xi_c_fit_theory_reason=theory_reason, c_star_fit=0.5)


def test_finite_width_summary_counts_failed_fits_by_whether_the_theory_resolves_the_window():
    from deepprop.report.claims_001 import finite_width_summary

    rows = [_fit("far", 0.9, 5.2, 5.0, 0.1),  # +4 % +- 2 %: agrees
            _fit("near", 0.9, 7.0, 5.0, 0.1),  # +40 %, 20 sigma: differs
            _fit("far", 1.0, math.nan, 900.0, math.nan, "not resolved", "not resolved"),  # unresolved
            _fit("near", 1.0, math.nan, 20.0, math.nan, "3 of 3 replicate fits failed")]  # a failed measured fit
    ours = finite_width_summary(rows)
    assert ours["settings_compared"] == 2 and ours["settings_unresolved"] == 1 and ours["failed_measured_fits"] == 1
    assert ours["fraction_compared"] == 0.5
    assert ours["worst_abs_rel_err"] == pytest.approx(0.4) and ours["worst_abs_rel_err_comparisons"] == 2
    assert ours["near_rho0.9_N300_rel_err_window"] == pytest.approx(0.4)
    assert len(ours["failed_fits"]) == 2 and "not compared" in ours["failed_fits"][0]
    assert "measured fit failed" in ours["failed_fits"][1]
    c = select("001-fig3/finite-width")[0]
    assert verdict(ours, c.paper, c.tolerance).verdict == DIFFERS
    clean = finite_width_summary(rows[:1] + rows[2:3])
    assert clean["fraction_compared"] == 0.5
    assert verdict(clean, c.paper, c.tolerance).verdict == REPRODUCED


def test_new_rows_end_to_end_at_smoke(tmp_path):
    out = tmp_path / "rep"
    run_report(NEW_ROWS, "smoke", out, quiet=True)
    rows = {r["id"]: r for r in _load(out)["claims"]}
    assert set(rows) == set(NEW_ROWS.split(","))
    for cid, row in rows.items():
        c = REGISTRY[cid]
        assert row["verdict"] == verdict(row["ours"], row["paper"], c.tolerance).verdict
        assert row["kind"] == c.kind
        assert (out / row["figure"]).is_file()
    fw = rows["001-fig3/finite-width"]["ours"]
    assert all(isinstance(x, str) for x in fw["failed_fits"])
    assert fw["settings_compared"] + fw["settings_unresolved"] + fw["failed_measured_fits"] == 10  # 5 rho x 2 starts
    line = rows["003-mutual-information/critical-line"]["ours"]
    # Jensen: equal-gain I/N <= log(1 + snr)/2, equality only for an isometry
    assert 0 < line["isometry_mi"] < line["mi_isometry_bound"] == pytest.approx(0.5 * math.log(2.0))


@pytest.mark.parametrize("tier", ["quick", "full"])
def test_cpu_tiers_train_on_fashion_mnist_where_installed(tier, tmp_path, monkeypatch):
    # the full tier once fell through to the 8x8 digits: its 30-layer CNN then saw 2x2 images and stayed at chance
    from deepprop.report import context

    monkeypatch.setattr(context, "dataset_available", lambda name, data_dir=None: name == "fashion-mnist")
    ctx = context.Context(tier=tier, out=tmp_path)
    assert ctx.mnist_like()[0] == "fashion-mnist"
    assert ctx.mnist_like(fast=True)[0] == "digits"
    assert context.Context(tier="smoke", out=tmp_path).mnist_like()[0] == "digits"


def test_an_undecided_row_does_not_send_the_reader_to_the_tier_that_just_ran():
    from deepprop.report.runner import decides_at

    text = "the full tier (width 1000) and the paper tier (depths to 300)"
    assert decides_at(text, "quick") == text
    assert "this full-tier run did not decide it" in decides_at(text, "full")
    assert "this paper-tier run did not decide it" in decides_at(text, "paper")
    assert decides_at("", "full") == ""
