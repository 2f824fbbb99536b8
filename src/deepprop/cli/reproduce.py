"""``deepprop reproduce``: run the papers' claims and write the report (index.html, claims.json, figures, data)."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reproduce", help="reproduce the papers' claims; write index.html and claims.json")
    p.add_argument("--tier", default="quick",
                   help="smoke (toy sizes, < 3 min), quick (default, <= 10 min on 2 cores), full (every row a CPU "
                        "can decide, at the papers' budgets; <= 60 min on 2 cores) or paper (the papers' sizes; "
                        "for a GPU)")
    p.add_argument("--out", default="results", help="output directory (default results/)")
    p.add_argument("--only", default=None, metavar="IDS",
                   help="comma-separated claim ids (a parent id such as 001-fig5 selects its sub-rows)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--data-dir", default=None, help="directory with MNIST / Fashion-MNIST / CIFAR-10 files")
    p.add_argument("--force", action="store_true", help="recompute claims already finished in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from deepprop.report.runner import run_report, table_text

    result = run_report(args.only, args.tier, args.out, device=args.device, data_dir=args.data_dir,
                        force=args.force, quiet=args.quiet, log=None if args.quiet else print)
    sys.stdout.write(table_text(result) + "\n")
    sys.stdout.write(f"report: {result.index}\n")
    return 0
