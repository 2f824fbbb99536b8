"""index.html: one self-contained static page (images embedded as base64 data URIs; no network).

The first screen says which tier ran and what it cannot decide, under a one-line summary; then three tables:
the papers' claims (the authors' quantity and criterion), deepprop's own tests, and engine checks; then one
section per claim with our figure beside a sentence describing the paper's.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

from deepprop.atomic import write_atomically
from deepprop.report.verdict import DIFFERS, NOT_RUN, REPRODUCED, UNDECIDED

COLOURS = {REPRODUCED: "#1a7f37", DIFFERS: "#b35900", UNDECIDED: "#8250df", NOT_RUN: "#6e7781"}
KIND_TITLES = {
    "paper": ("The papers' claims", "the quantity the authors measured, with their criterion (see protocols.md)"),
    "own": ("deepprop's own tests", "quantities and comparisons the authors did not measure: ours, not the papers'"),
    "engine": ("Engine checks", "can only fail through a bug in deepprop (closed forms, quadrature, identities)"),
}
STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:1.5em;color:#1f2328}
h1{font-size:1.5em;margin-bottom:.2em} .summary{font-size:1.15em;font-weight:600;margin:.4em 0 .8em}
.note{background:#fff8c5;border:1px solid #d4a72c;padding:.5em .8em;border-radius:6px;margin:.6em 0}
table.claims{border-collapse:collapse;width:100%;font-size:.82em;margin-bottom:1em}
h2.kind{font-size:1.15em;margin:1em 0 .3em} h2.kind small{font-weight:400;color:#57606a}
.claims th,.claims td{border:1px solid #d0d7de;padding:4px 6px;vertical-align:top;text-align:left}
th{background:#f6f8fa;position:sticky;top:0}
.verdict{font-weight:700} .verdict small{white-space:normal;display:block;min-width:12em}
code{font-size:.85em;word-break:break-all}
.claim{border-top:2px solid #d0d7de;margin-top:1.5em;padding-top:.6em}
.pair{display:flex;gap:1.2em;align-items:flex-start;flex-wrap:wrap}
.pair .text{flex:1 1 320px;min-width:280px}
.pair .figs{flex:2 1 600px} .pair img{max-width:100%;border:1px solid #d0d7de;margin-bottom:.5em}
.kv{font-size:.85em} .kv td{border:none;padding:1px 6px} .tip{border-bottom:1px dotted #888;cursor:help}
.claims td:nth-child(3){min-width:16em} small{font-weight:400;color:#57606a}
"""


def _esc(x: Any) -> str:
    return html.escape("" if x is None else str(x))


def _value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):
        return "<br>".join(f"{_esc(k)}: {_value(x)}" for k, x in v.items() if not str(k).endswith("_reason"))
    if isinstance(v, list):
        return ", ".join(_value(x) for x in v)
    return _esc(v) if v is not None else "&ndash;"


def _tolerance(record: dict[str, Any], sources: bool = True) -> str:
    """Each checked quantity's tolerance; where it comes from in italics, or as a tooltip in the table."""
    tol = record.get("tolerance") or {}
    if sources:
        return "<br>".join(f"{_esc(n)}: {_esc(t.get('text'))} <i>({_esc(t.get('source'))})</i>"
                           for n, t in tol.items())
    return "<br>".join(f'<span title="{_esc(t.get("source"))}" class="tip">{_esc(t.get("text"))}</span>'
                       for t in tol.values())


def _figures(record: dict[str, Any]) -> list[str]:
    f = record.get("figure")
    if not f:
        return []
    return [f] if isinstance(f, str) else list(f)


def _img(out: Path, rel: str) -> str:
    path = out / rel
    try:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError:
        return f'<p>figure {_esc(rel)} is missing</p>'
    return f'<a href="{_esc(rel)}"><img alt="{_esc(rel)}" src="data:image/png;base64,{data}"></a>'


def _margin(r: dict[str, Any]) -> str:
    m = r.get("margin")
    if isinstance(m, (int, float)):
        return f"{m:+.2f}"
    return f'<span class="tip" title="{_esc(r.get("margin_reason"))}">&ndash;</span>'


def _deciding(r: dict[str, Any]) -> str:
    d = r.get("deciding") or {}
    if not d:
        return "&ndash;"
    err = f" ± {_value(d.get('err'))}" if d.get("err") is not None else ""
    return f"{_esc(d.get('name'))}: {_value(d.get('value'))}{err} vs {_value(d.get('target'))}"


def _row(r: dict[str, Any]) -> str:
    v = r["verdict"]
    figs = " ".join(f'<a href="#{_esc(r["id"])}">fig</a>' for _ in _figures(r)[:1])
    return (
        f'<tr class="claim-row" data-id="{_esc(r["id"])}" data-kind="{_esc(r.get("kind"))}" '
        f'data-verdict="{_esc(v)}"><td><a href="#{_esc(r["id"])}">{_esc(r["id"])}</a></td>'
        f'<td>{_esc(r["source"])}</td><td>{_esc(r["statement"])}</td><td>{_deciding(r)}</td>'
        f'<td>{_tolerance(r, sources=False) if v != NOT_RUN else "&ndash;"}</td><td>{_margin(r)}</td>'
        f'<td class="verdict" style="color:{COLOURS.get(v, "#000")}" title="{_esc(r["why"])}">{_esc(v)}'
        f'{"<br><small>" + _esc(r["why"]) + "</small>" if v in (NOT_RUN, UNDECIDED, DIFFERS) else ""}</td>'
        f'<td><details><summary>command</summary><code>{_esc(r["command"])}</code></details></td>'
        f'<td>{(r.get("seconds") or 0):.1f}</td><td>{figs}</td></tr>')


def _section(out: Path, r: dict[str, Any]) -> str:
    figs = "".join(_img(out, f) for f in _figures(r)) or "<p><i>no figure: the row's numbers are the result "\
                                                         "(raw numbers in the data files)</i></p>"
    data = ", ".join(f'<a href="{_esc(d)}">{_esc(d)}</a>' for d in r.get("data") or []) or "&ndash;"
    margin = r.get("margin")
    mtext = (f"{margin:+.2f} standard errors" if isinstance(margin, (int, float))
             else f"none ({_esc(r.get('margin_reason'))})")
    return (
        f'<section class="claim" id="{_esc(r["id"])}"><h2>{_esc(r["id"])} &mdash; '
        f'<span style="color:{COLOURS.get(r["verdict"], "#000")}">{_esc(r["verdict"])}</span> '
        f'<small>({_esc(KIND_TITLES.get(r.get("kind", ""), ("",))[0])})</small></h2>'
        f'<div class="pair"><div class="text"><p><b>Claim.</b> {_esc(r["statement"])}</p>'
        f'<p><b>The paper ({_esc(r["source"])}).</b> {_esc(r.get("paper_says"))}</p>'
        f'<p><b>Setting.</b> {_esc(r.get("note")) or "&ndash;"}</p><p><b>Verdict.</b> {_esc(r["why"])}</p>'
        f'<p><b>Margin.</b> {mtext}</p>'
        f'<table class="kv"><tr><td><b>ours</b></td><td>{_value(r.get("ours"))}</td></tr>'
        f'<tr><td><b>target</b></td><td>{_value(r.get("paper"))}</td></tr></table>'
        f'<p><b>Tolerance.</b><br>{_tolerance(r)}</p>'
        f'<p><b>Raw numbers:</b> {data}</p><p><b>Recompute:</b> <code>{_esc(r["command"])}</code></p></div>'
        f'<div class="figs">{figs}</div></div></section>')


HEAD = ("<tr><th>id</th><th>paper and place</th><th>claim</th><th>deciding number: ours vs target</th>"
        "<th>tolerance (hover: where it comes from)</th><th>margin (SE)</th><th>verdict (hover: why)</th>"
        "<th>recompute</th><th>s</th><th></th></tr>")


def render(out: Path, doc: dict[str, Any]) -> str:
    """The page as a string."""
    records = doc["claims"]
    tables, sections = [], []
    for kind, (title, sub) in KIND_TITLES.items():
        mine = [r for r in records if r.get("kind", "paper") == kind]
        if not mine:
            continue
        tables.append(f'<h2 class="kind">{_esc(title)} <small>&mdash; {_esc(sub)}</small></h2>'
                      f'<table class="claims" id="claims-{kind}"><thead>{HEAD}</thead><tbody>'
                      + "".join(_row(r) for r in mine) + "</tbody></table>")
        sections += [_section(out, r) for r in mine]
    open_rows = [r for r in records if r["verdict"] in (UNDECIDED, NOT_RUN)]
    cannot = "; ".join(
        f'<a href="#{_esc(r["id"])}">{_esc(r["id"])}</a> ({_esc(r["verdict"])}'
        + (f', decided by {_esc(r["decides"])}' if r.get("decides") and r["verdict"] == UNDECIDED else "") + ")"
        for r in open_rows) or "nothing: every row is decided"
    meta = (f'tier {_esc(doc["tier"])}, device {_esc(doc["device"])}, deepprop {_esc(doc["deepprop_version"])}, '
            f'torch {_esc(doc["torch_version"])}, {_esc(doc["cpu_count"])} CPUs, '
            f'{doc["seconds_total"]:.0f} s of claim time')
    payload = json.dumps({"rows": len(records)})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>deepprop reproduction report</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{STYLE}</style></head>
<body data-claims='{payload}'><h1>deepprop: which claims of the papers it reproduces</h1>
<div class="summary" id="summary">{_esc(doc["summary"])}</div>
<div class="note" id="tier-note"><b>Tier: {_esc(doc["tier"])}.</b> {_esc(doc["tier_note"])}</div>
<div class="note" id="cannot-decide"><b>What this run leaves undecided or does not run:</b> {cannot}</div>
<div class="note" id="verdicts-note"><b>Verdicts.</b> reproduced / differs: the deciding number lies at least 2
standard errors inside / beyond its threshold (beyond a Bonferroni-widened bound when it is the worst of several
comparisons); undecided: closer than that, or the grid holds no cell that could tell; margin: the signed distance
from the threshold in the number's own standard errors (seeds, bootstrap, jackknife), none for a deterministic
computation.</div>
<p class="kv">{meta}</p>
{"".join(tables)}
{"".join(sections)}
</body></html>
"""


def write_index(out: Path, doc: dict[str, Any]) -> Path:
    """Write OUT/index.html atomically and return its path."""
    text = render(out, doc)
    return write_atomically(out / "index.html", lambda tmp: tmp.write_text(text, encoding="utf-8"))
