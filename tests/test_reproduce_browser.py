"""index.html in a real browser (headless Chromium): every image loads, one table row per claim, no errors.

Skipped cleanly where Chromium is not installed (.ci/run installs it: apt-get install -y chromium).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from deepprop.jsonout import loads_strict
from deepprop.report import run_report

CHROMIUM = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', function (e) { window.__errors.push(String(e.message || e.type)); }, true);
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var bad = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); }).length;
  var b = document.body;
  b.setAttribute('data-images', String(imgs.length));
  b.setAttribute('data-broken-images', String(bad));
  b.setAttribute('data-rows', String(document.querySelectorAll('tr.claim-row').length));
  b.setAttribute('data-errors', String(window.__errors.length));
});
</script>"""


def _chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True, text=True,
                          timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_index_renders_in_headless_chromium(tmp_path, one_torch_thread):
    out = tmp_path / "rep"
    run_report("001-fig1,001-fig3,004-closed-forms,004-overflow-depth,001-fig5/cifar10", "smoke", out, quiet=True)
    doc = loads_strict((out / "claims.json").read_text())
    page = (out / "index.html").read_text()
    probe = out / "probe.html"  # the page plus a probe that records what the browser saw
    probe.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    res = _chromium(["--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000", "--dump-dom",
                     probe.as_uri()], tmp_path / "profile-dom")
    body = re.search(r"<body[^>]*>", res.stdout)
    assert body, res.stderr[-2000:]
    attrs = dict(re.findall(r'data-([a-z-]+)="([^"]*)"', body.group(0)))
    n_figs = sum(1 if isinstance(r["figure"], str) else len(r["figure"]) for r in doc["claims"] if r["figure"])
    assert int(attrs["images"]) == n_figs > 0
    assert attrs["broken-images"] == "0"
    assert int(attrs["rows"]) == len(doc["claims"])
    assert attrs["errors"] == "0"
    console = [ln for ln in res.stderr.splitlines() if "CONSOLE" in ln and ("Uncaught" in ln or "rror" in ln)]
    assert not console, console
    shot = out / "screenshot.png"
    _chromium(["--window-size=1400,1800", "--hide-scrollbars", f"--screenshot={shot}", (out / "index.html").as_uri()],
              tmp_path / "profile-shot")
    assert shot.is_file() and shot.stat().st_size > 10_000
    keep = Path("/tmp/deepprop-report-screenshot.png")
    try:
        shutil.copyfile(shot, keep)
    except OSError:
        pass
