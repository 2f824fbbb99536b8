"""The README's real-model quick start is the example file, and (slow) runs; the width-256 agreement of the
real-model claim at its quick-tier sizes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_readme_quickstart_is_the_example_file():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"<!-- real-models-quickstart -->\n```python\n(.*?)```", text, re.S)
    assert block is not None
    assert block.group(1) == (ROOT / "examples" / "resnet_profile.py").read_text()


@pytest.mark.slow
def test_the_example_runs_and_prints_a_verdict():
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "resnet_profile.py")], capture_output=True,
                         text=True, check=True, timeout=1200).stdout
    assert out.count("verdict: expect it to train") == 2 and "residual branches:" in out


@pytest.mark.slow
def test_exact_predictions_agree_within_ten_percent_at_width_256(one_torch_thread):
    from deepprop.integrations.profile import profile
    from deepprop.report.claims_real_models import SIZES, agreement_models, deviations

    s = dict(SIZES["quick"])
    for name, model, x in agreement_models(s, seed=1):
        p = profile(model, x, inits=s["inits"], pairs=s["cnn_pairs"] if "CNN" in name else s["pairs"], seed=1,
                    jacobian=False)
        dev = deviations(p)
        assert dev["rows"] >= 8, name
        assert dev["q_beyond_noise"] <= 0.10 and dev["c_beyond_noise"] <= 0.10, (name, dev)
