"""Run the selected claims, one after the other, saving each as it finishes; then write claims.json and
index.html. Every input is checked before anything is written to OUT."""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deepprop.atomic import write_atomically
from deepprop.errors import DatasetError, ParameterError
from deepprop.jsonout import to_json
from deepprop.report import trainability
from deepprop.report.checkpoint import claims_checkpoint, load_result
from deepprop.report.context import Context, dataset_available
from deepprop.report.registry import Claim, check_tier, select
from deepprop.report.verdict import DIFFERS, NOT_RUN, REPRODUCED, UNDECIDED, VERDICTS, verdict
from deepprop.results import format_number
from deepprop.validation import resolve_device

TIER_NOTES = {
    "smoke": "smoke tier: every claim at toy size to exercise every experiment path; sizes are far below the "
             "papers' and the verdicts are reported but NOT meaningful (the experiments are too small to decide).",
    "quick": "quick tier (make demo, <= 10 minutes on a 2-core CPU): theory and simulation rows at meaningful "
             "sizes; trainability on a width-32 grid of 8x8 digits standing in for MNIST (depths 6-96, dropout to "
             "96), learning rates grid-searched per depth, budgets 45-14000 steps. It cannot decide: how the "
             "trainable depth depends on width (the full tier adds widths 128 and 300 on Fashion-MNIST), RMSProp at "
             "13780 steps, dropout at depth 192 and 2048 steps (where xi_c and |1/log chi_1| part), the authors' "
             "budgets for the trainable-length curves (>= 1000 steps), eq. 17 at width 1000 (all in the full tier); "
             "CIFAR-10 (not installed); the information-channel paper's own quantity (not implemented).",
    "full": "full tier (<= 60 minutes on a 2-core CPU): every row a CPU can decide, at the papers' budgets (45, "
            "200/304, 2048, 13780 steps) on Fashion-MNIST standing in for MNIST: widths 32, 128 (to 2048 steps) and "
            "300 (to 304 steps), dropout to depth 192 and 2048 steps, eq. 17 at width 1000. It cannot decide: width "
            "300 beyond 304 steps and the papers' own grids (10 <= L <= 300, 30 x 30 cells, width 300): the paper "
            "tier on a GPU; CIFAR-10 where it is not installed; the information-channel paper's own quantity (not "
            "implemented).",
    "paper": "paper tier (for a GPU): the papers' sizes and budgets (width 300, depths to 300, their step "
             "counts, datasets by name where present).",
}


@dataclass
class ReportResult:
    records: list[dict[str, Any]]
    summary: str
    index: Path
    claims_json: Path


def check_out(out: str | os.PathLike) -> Path:
    """OUT as a Path, or ParameterError('out') unless it is (or can be created as) a writable directory.

    Nothing is created here."""
    p = Path(out).expanduser().absolute()
    if p.exists() and not p.is_dir():
        raise ParameterError("out", f"{p} exists and is not a directory")
    probe = p
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ParameterError("out", f"cannot create {p}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ParameterError("out", f"directory {probe} is not writable")
    return p


def check_device(device: str) -> str:
    """'cpu' or 'cuda[:N]' (:func:`deepprop.validation.resolve_device`: ParameterError('device') otherwise)."""
    return str(resolve_device(device))


def check_data_dir(data_dir: str | None) -> str | None:
    """A --data-dir must exist and hold MNIST, Fashion-MNIST or CIFAR-10 (else ParameterError('data_dir'))."""
    if data_dir is None:
        return None
    d = Path(data_dir).expanduser()
    if not d.is_dir():
        raise ParameterError("data_dir", f"not a directory: {d}")
    if not any(dataset_available(n, str(d)) for n in ("mnist", "fashion-mnist", "cifar10")):
        raise ParameterError("data_dir", f"no MNIST, Fashion-MNIST or CIFAR-10 files in {d}")
    return str(d)


def command_for(claim_id: str, tier: str, out: Path, device: str, data_dir: str | None) -> str:
    """The command that recomputes just this row."""
    parts = ["deepprop", "reproduce", "--tier", tier, "--only", claim_id, "--out", str(out), "--force"]
    if device != "cpu":
        parts += ["--device", device]
    if data_dir:
        parts += ["--data-dir", data_dir]
    return shlex.join(parts)


def measure(c: Claim, ctx: Context) -> dict[str, Any]:
    """Run one claim and turn its measurement into a row (the verdict computed from the numbers)."""
    t0 = time.perf_counter()
    try:
        m = c.run(ctx)
    except (DatasetError, ParameterError) as exc:  # a missing data set, a size the library refuses
        from deepprop.report.registry import Measurement

        m = Measurement(not_run=f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - one failing experiment must not hide the others; reported
        from deepprop.report.registry import Measurement

        tb = traceback.extract_tb(exc.__traceback__)[-1]
        m = Measurement(not_run=f"failed: {type(exc).__name__}: {exc} ({Path(tb.filename).name}:{tb.lineno})")
    seconds = time.perf_counter() - t0
    paper = {**dict(c.paper), **m.reference}
    margin, margin_reason, deciding = None, None, None
    if m.not_run is not None:
        v, why, margin_reason = NOT_RUN, m.not_run, "not run: nothing was measured"
    else:
        res = verdict(m.ours, paper, c.tolerance, undecided=m.undecided)
        v, why, margin, margin_reason, deciding = res.verdict, res.why, res.margin, res.margin_reason, res.deciding
        if v == UNDECIDED and c.decides:
            why += f"; decided by: {decides_at(c.decides, ctx.tier)}"
    figure: Any = m.figure[0] if len(m.figure) == 1 else list(m.figure)
    return {
        "id": c.id, "kind": c.kind, "source": c.source, "statement": c.statement, "paper": paper, "ours": m.ours,
        "tolerance": {k: t.to_dict() for k, t in c.tolerance.items()}, "verdict": v, "why": why,
        "margin": margin, "margin_reason": margin_reason, "deciding": deciding,
        "decides": decides_at(c.decides, ctx.tier) or None,
        "command": command_for(c.id, ctx.tier, ctx.out, ctx.device, ctx.data_dir), "seconds": round(seconds, 3),
        "figure": figure, "paper_says": c.paper_says, "data": list(m.data), "note": m.note, "tier": ctx.tier,
        "finished_at": time.time(),
    }


def summary_line(records: list[dict[str, Any]]) -> str:
    """'P of N claims reproduced, D differ, U undecided at this size, X not run', then the same per kind."""
    n = len(records)
    count = {v: sum(r["verdict"] == v for r in records) for v in VERDICTS}
    line = (f"{count[REPRODUCED]} of {n} claims reproduced, {count[DIFFERS]} differ, {count[UNDECIDED]} undecided "
            f"at this size, {count[NOT_RUN]} not run")
    parts = []
    for kind in ("paper", "own", "engine"):
        mine = [r for r in records if r.get("kind", "paper") == kind]
        if mine:
            c = {v: sum(r["verdict"] == v for r in mine) for v in VERDICTS}
            parts.append(f"{kind} {c[REPRODUCED]}/{len(mine)} reproduced, {c[DIFFERS]} differ, {c[UNDECIDED]} "
                         f"undecided, {c[NOT_RUN]} not run")
    return line + (" (" + "; ".join(parts) + ")" if parts else "")


def run_report(
    only: str | None = None,
    tier: str = "quick",
    out: str | os.PathLike = "results",
    *,
    device: str = "cpu",
    data_dir: str | None = None,
    force: bool = False,
    quiet: bool = False,
    log: Callable[[str], None] | None = None,
) -> ReportResult:
    """Run the claims ``only`` names (all by default) at ``tier`` into ``out``; see the package docstring."""
    tier = check_tier(tier)
    claims = select(only)
    device = check_device(device)
    data_dir = check_data_dir(data_dir)
    out_path = check_out(out)
    out_path.mkdir(parents=True, exist_ok=True)
    started = time.time()
    from tqdm import tqdm

    ckpt = claims_checkpoint(out_path, tier)
    todo = [c for c in claims if force or c.id not in ckpt]
    names = trainability.sweeps_for([c.id for c in todo], tier)
    if names:  # every trainability sweep of the run first, in parallel worker processes (resumable)
        trainability.ensure(Context(tier, out_path, device=device, data_dir=data_dir, progress=not quiet), names)
    bar = tqdm(claims, desc="claims", unit="claim", disable=quiet, file=sys.stderr, dynamic_ncols=True)
    for c in bar:
        bar.set_postfix_str(c.id, refresh=True)
        if not force and c.id in ckpt:
            continue
        ctx = Context(tier, out_path, device=device, data_dir=data_dir, progress=not quiet, claim_id=c.id,
                      sizes=c.sizes[tier])
        record = measure(c, ctx)
        ckpt.save(c.id, json.loads(to_json(record)))  # strict JSON: non-finite numbers as null
        if log is not None:
            bar.write(f"{c.id}: {record['verdict']} ({record['seconds']:.1f} s)", file=sys.stderr)
    bar.close()
    return write_outputs(out_path, tier, device, data_dir, started)


def collect(out: Path, tier: str) -> list[dict[str, Any]]:
    """Saved rows of every registered claim finished at ``tier`` in OUT, in report order."""
    from deepprop.report.registry import all_claims

    ckpt = claims_checkpoint(out, tier)
    return [r for r in (load_result(ckpt, c.id) for c in all_claims()) if r is not None]


def write_outputs(out: Path, tier: str, device: str, data_dir: str | None, started: float) -> ReportResult:
    """claims.json and index.html from the saved rows (both written atomically)."""
    import torch

    from deepprop._version import __version__
    from deepprop.report.html import write_index

    records = collect(out, tier)
    line = summary_line(records)
    meta = {
        "summary": line,
        "counts": {v: sum(r["verdict"] == v for r in records) for v in VERDICTS},
        "counts_by_kind": {k: {v: sum(r["verdict"] == v for r in records if r.get("kind") == k) for v in VERDICTS}
                           for k in ("paper", "own", "engine")},
        "tier": tier, "tier_note": TIER_NOTES[tier], "device": device, "data_dir": data_dir,
        "deepprop_version": __version__, "torch_version": torch.__version__,
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "started": started, "finished": time.time(),
        "seconds_total": round(sum(r.get("seconds") or 0.0 for r in records), 3),
    }
    doc = {"claims": records, **meta}
    claims_json = out / "claims.json"
    _atomic_text(claims_json, to_json(doc))
    index = write_index(out, doc)
    return ReportResult(records, line, index, claims_json)


def _atomic_text(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _num(v: Any) -> str:
    """A deciding number: 4 significant digits (integers too), ``-`` for none."""
    return format_number(float(v) if isinstance(v, int) and not isinstance(v, bool) else v, 4)


def headline(record: dict[str, Any]) -> str:
    """The deciding number of a row: 'name = value vs target (tolerance), margin +x SE' (or 'deterministic')."""
    d = record.get("deciding") or {}
    tol = (record.get("tolerance") or {}).get(d.get("name"), {})
    if not d:
        return ""
    margin = record.get("margin")
    if d.get("value") is None:
        return str(record.get("margin_reason") or "")
    m = f"margin {margin:+.2f} SE" if isinstance(margin, (int, float)) else "deterministic"
    return f"{d['name']} = {_num(d.get('value'))} vs {_num(d.get('target'))} ({tol.get('text', '')}), {m}"


def decides_at(decides: str, tier: str) -> str:
    """A claim's ``decides`` text as read at ``tier``: where it names this very tier, the row is still undecided
    after it ran, and the text says so (instead of pointing the reader to the run they are looking at)."""
    if decides and f"the {tier} tier" in decides:
        return f"{decides} [this {tier}-tier run did not decide it at its sizes]"
    return decides


def table_text(result: ReportResult) -> str:
    """The terminal table: id, kind, verdict, the deciding number and its margin; then the summary."""
    w = max([len(r["id"]) for r in result.records] + [5])
    lines = [f"{'claim':<{w}}  {'kind':<6}  {'verdict':<10}  deciding number (margin in its standard errors)"]
    for r in result.records:
        text = headline(r) if r["verdict"] != NOT_RUN else r["why"]
        lines.append(f"{r['id']:<{w}}  {r.get('kind', ''):<6}  {r['verdict']:<10}  {text}")
    lines.append(result.summary)
    return "\n".join(lines)
