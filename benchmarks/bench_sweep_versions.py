"""One ``train_ensemble`` call of this checkout against the same call of another source tree, in alternating
fresh processes (the machine's speed drifts: only figures of neighbouring processes compare).

    git archive 3ed9e24 src | tar -x -C /tmp/old        # the other tree
    python benchmarks/bench_sweep_versions.py --other /tmp/old/src --width 128 --depth 10 --optimizer sgd

Workload: 16 networks (sigma_w2 spread over [1, 4], two data seeds), MNIST-shaped random inputs, tanh, dropout
keep rate ``--keep-rate``, ``--steps`` steps and an evaluation of ``--eval`` examples of each subset, one
torch thread, CPU time of the call (a warm-up call first). Prints one JSON line per process and the ratio
of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

CHILD = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(1)
import deepprop
from deepprop.sweep.ensemble import NetSpec, TrainSettings, train_ensemble
w, depth, opt, keep, steps, ev = {args}
g = torch.Generator().manual_seed(0)
x = torch.randn(max(4000, ev), 784, generator=g); y = torch.randint(0, 10, (len(x),), generator=g)
lr = 1e-3 if opt == "sgd" else 1e-5
sw2 = np.linspace(1, 4, 16)
specs = [NetSpec(float(s), 0.05, lr, i % 2, 100 + i, 7 + i, keep_rate=keep) for i, s in enumerate(sw2)]
warm = TrainSettings(depth=depth, width=w, steps=2, optimizer=opt, eval_train=10, eval_test=10)
train_ensemble(specs, warm, x, y, x, y, 10)
settings = TrainSettings(depth=depth, width=w, steps=steps, optimizer=opt, eval_train=ev, eval_test=ev)
t0 = time.process_time()
res = train_ensemble(specs, settings, x, y, x, y, 10)
t = time.process_time() - t0
print(json.dumps({{"tree": deepprop.__file__.split("/deepprop/")[0], "cpu_s": t,
                  "network_steps_per_s": 16 * steps / t, "final_loss_0": float(res.final_loss[0])}}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--other", required=True, help="the other tree's src/ folder")
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--depth", type=int, default=10)
    p.add_argument("--optimizer", default="sgd")
    p.add_argument("--keep-rate", type=float, default=0.9)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--eval", type=int, default=1000)
    p.add_argument("--pairs", type=int, default=2)
    a = p.parse_args()
    trees = {"other": a.other, "this": str(Path(__file__).resolve().parents[1] / "src")}
    code = CHILD.format(args=(a.width, a.depth, a.optimizer, a.keep_rate, a.steps, a.eval))
    times: dict[str, list[float]] = {"other": [], "this": []}
    for _ in range(a.pairs):
        for name, src in trees.items():
            env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            line = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps({"which": name, **line}), flush=True)
            times[name].append(line["cpu_s"])
    print(f"this tree is {statistics.median(times['other']) / statistics.median(times['this']):.2f}x the other "
          f"(median CPU seconds {statistics.median(times['this']):.2f} vs {statistics.median(times['other']):.2f})")


if __name__ == "__main__":
    main()
