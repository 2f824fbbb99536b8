"""``deepprop reproduce``: run the papers' claims and write the report (index.html, claims.json, figures, data).

``--out`` is a directory option (:func:`deepprop.validation.check_output_dir`): an existing directory or a new
one whose parent exists. The report writes index.html, claims.json, claims/, data/ and figures into it,
so a directory that is neither empty nor a deepprop report is refused unless ``--force`` is given.
"""

from __future__ import annotations

import argparse
import sys

from deepprop.cli import common
from deepprop.errors import ParameterError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("reproduce", help="reproduce the papers' claims; write index.html and claims.json")
    p.add_argument("--tier", default="quick",
                   help="smoke (toy sizes, < 3 min), quick (default, <= 10 min on 2 cores), full (every row a CPU "
                        "can decide, at the papers' budgets; <= 60 min on 2 cores) or paper (the papers' sizes; "
                        "for a GPU)")
    p.add_argument("--out", type=common.path_text, default="results",
                   help="output directory (default results/): empty, new (its parent must exist) or an earlier "
                        "deepprop report")
    p.add_argument("--only", default=None, metavar="IDS",
                   help="comma-separated claim ids (a parent id such as 001-fig5 selects its sub-rows)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--data-dir", type=common.path_text, default=None,
                   help="directory with MNIST / Fashion-MNIST / CIFAR-10 files")
    p.add_argument("--force", action="store_true",
                   help="recompute claims already finished in OUT, and write into a non-empty OUT that is not a "
                        "deepprop report")
    common.add_json(p, "print the summary and each claim's verdict as one JSON object instead of the table")
    common.add_quiet(p, "no progress bars")
    p.set_defaults(func=_run)


def check_report_out(out: str, force: bool) -> None:
    """OUT is a directory we may write a report into (see the module docstring); nothing is created."""
    from deepprop.report.checkpoint import report_state
    from deepprop.validation import check_output_dir

    path = check_output_dir(out, param="out", create=False)
    if report_state(path) == "other" and not force:
        raise ParameterError("out", f"{path} is not empty and holds no deepprop report (index.html, claims.json "
                                    "would be overwritten); choose an empty or new directory, or pass --force")


def _run(args: argparse.Namespace) -> int:
    from deepprop.cli.common import headless_plots
    from deepprop.report.runner import run_report, table_text

    check_report_out(args.out, args.force)
    headless_plots()
    result = run_report(args.only, args.tier, args.out, device=args.device, data_dir=args.data_dir,
                        force=args.force, quiet=not args.progress or args.json,
                        log=None if not args.progress or args.json else print)
    if args.json:
        from deepprop.report.verdict import VERDICTS

        counts = {v: sum(r["verdict"] == v for r in result.records) for v in VERDICTS}
        common.print_json({"out": str(result.index.parent), "index": str(result.index),
                           "claims_json": str(result.claims_json), "summary": result.summary, "counts": counts,
                           "claims": [{"id": r["id"], "verdict": r["verdict"]} for r in result.records]})
        return 0
    sys.stdout.write(table_text(result) + "\n")
    sys.stdout.write(f"report: {result.index}\n")
    return 0
