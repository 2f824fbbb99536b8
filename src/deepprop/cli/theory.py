"""Engine commands: ``point``, ``critical``, ``phase`` and ``figures``."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from deepprop.cli import common
from deepprop.cli.common import UsageError
from deepprop.cli.init import add_maximize_depth_option
from deepprop.prior import NOISE_FIELDS, PRIOR_FIELDS

DEPTH_SCALES = ("xi_q", "xi_c", "xi_grad", "max_depth")
"""Depth scales: +inf where their rate is within critical_tol of 1 (the engine's one critical rule,
:func:`deepprop.theory.depth_scales.critical_rule`), which the JSON writes as null with reason "critical"."""
POINT_SCHEMA = ("activation", *PRIOR_FIELDS, "phase", "q_star",
                "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad", "max_depth", "depth_multiple",
                "critical_within_tolerance", "critical_tol", "notes")
CRITICAL_SCHEMA = ("activation", "sigma_b2", *NOISE_FIELDS, "sigma_w2", "note")
MAXIMIZE_SCHEMA = ("activation", *NOISE_FIELDS, "search_sigma_w2", "search_sigma_b2",
                   "feasible", "on_boundary", "sigma_w2", "sigma_b2", "q_star", "c_star", "chi1", "xi_c",
                   "max_depth", "phase", "note")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "point",
        help="mean-field quantities at one (sigma_w2, sigma_b2)",
        description="Fixed points q*, c*, chi1, chi_c, depth scales xi_q, xi_c, xi_grad, phase and the "
        "predicted maximum trainable depth n*xi_c of a deep fully connected random network.",
    )
    common.add_prior_options(p, **{name: dict(type=common.nonnegative_float, required=True,
                                              help=f"{what} variance >= 0")
                                   for name, what in (("sigma_w2", "weight"), ("sigma_b2", "bias"))})
    p.add_argument("--depth-multiple", type=common.positive_float, default=6.0,
                   help="n > 0 in max_depth = n * xi_c (default 6, the paper's trainability bound)")
    p.add_argument("--q0", type=common.positive_float, default=1.0,
                   help="start q0 > 0 of the variance iteration (default 1; matters only where every q is a "
                   "fixed point)")
    common.add_json(p, "print one JSON object instead of a table")
    p.set_defaults(func=run_point)

    c = sub.add_parser(
        "critical",
        help="sigma_w2 on the critical line chi1 = 1 for a given sigma_b2",
        description="The weight variance at which chi1 = 1 (order-to-chaos transition) for a bias "
        "variance and noise setting.",
    )
    common.add_prior_options(c, sigma_b2=dict(
        type=common.nonnegative_float, default=None, help="bias variance >= 0 (required, except with "
        "--maximize-depth where it is held fixed when given and searched otherwise)"))
    add_maximize_depth_option(c)
    common.add_json(c, "print {\"sigma_w2\": ...} as JSON")
    c.set_defaults(func=run_critical)

    g = sub.add_parser(
        "phase",
        help="phase diagram over a (sigma_w2, sigma_b2) grid, written as CSV or NetCDF",
        description="Compute every mean-field quantity on the outer-product grid and write it as tidy CSV "
        "(one row per grid point) or NetCDF (xarray dims sigma_w2, sigma_b2).",
    )
    common.add_prior_options(g, **{name: dict(
        type=common.nonnegative_range, required=True, metavar="START:STOP:NUM",
        help=f"{what} variances, START:STOP:NUM inclusive like linspace (or V1,V2,...), >= 0")
        for name, what in (("sigma_w2", "weight"), ("sigma_b2", "bias"))})
    g.add_argument("--depth-multiple", type=common.positive_float, default=6.0, help="n > 0 in n * xi_c (default 6)")
    g.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"], help="where to compute")
    g.add_argument("--out", type=common.path_text, required=True,
                   help="output file: grid.csv or grid.nc (its folder must exist)")
    g.add_argument("--block-points", type=common.int_range(1, 1 << 30), default=1 << 16,
                   help="points per saved block, 1..2**30 (default 65536): a killed run loses at most one block, "
                   "and the same command again resumes from the saved ones")
    common.add_json(g, "print a JSON summary (path, points, phase counts) instead of the progress line")
    common.add_quiet(g)
    g.set_defaults(func=run_phase)

    f = sub.add_parser(
        "figures",
        help="draw the paper's figures 1-3 (theory) as PNG",
        description="Phase diagram and convergence (fig. 1), correlation map and depth scales, theory "
        "against measured (fig. 2), and the effect of dropout (fig. 3).",
    )
    f.add_argument("--out", type=common.path_text, required=True,
                   help="directory for the PNG files (created if missing; its parent must exist)")
    f.add_argument("--quick", action="store_true", help="coarser grids (for tests)")
    f.add_argument("--simulation", action="store_true",
                   help="also draw the finite-network figures (figs. 1b/c-4a/b analogues with theory lines, "
                   "Jacobian spectrum and mutual information, noisy ReLU at its critical init): minutes on a CPU")
    f.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="where the simulations run")
    common.add_json(f, "print the written files as a JSON object")
    common.add_quiet(f)
    f.set_defaults(func=run_figures)


def point_json(mf) -> tuple[dict, dict[str, str]]:
    """A single-point MeanField as (JSON dict, reasons): a depth scale that is infinite under the critical
    rule is null with reason "critical"; other quantities without a value are null with reason
    "undefined" (the notes say why). ``critical_within_tolerance`` is the phase test |chi1 - 1| <= critical_tol."""
    result = mf.to_dict()
    reasons = {}
    for name in (*DEPTH_SCALES, "q_star", "c_star", "chi1", "chi_c"):
        value = float(getattr(mf, name).reshape(-1)[0])
        result[name] = value  # raw value: the serializer writes null and the reason
        if name in DEPTH_SCALES and math.isinf(value):
            reasons[name] = "critical"
    result["critical_within_tolerance"] = result["phase"] == "critical"
    result["critical_tol"] = mf.critical_tol
    return result, reasons


def run_point(args: argparse.Namespace) -> int:
    from deepprop.theory.meanfield import mean_field

    mf = mean_field(common.prior_from_args(args), q0=args.q0, depth_multiple=args.depth_multiple)
    result = mf.to_dict()
    if args.json:
        data, reasons = point_json(mf)
        common.print_json(data, reasons=reasons, schema=POINT_SCHEMA)
        return 0
    rows = [(k, result[k]) for k in ("activation", *PRIOR_FIELDS)]
    rows += [(k, result[k]) for k in ("phase", "q_star", "c_star", "chi1", "chi_c", "xi_q", "xi_c", "xi_grad")]
    rows.append((f"max_depth ({args.depth_multiple:g}*xi_c)", result["max_depth"]))
    common.print_table(rows)
    for note in result["notes"]:
        print(f"note: {note}")
    return 0


NO_CRITICAL_POINT = ("no sigma_w2 in [1e-4, 1e4] gives chi1 = 1 with a finite fixed point q* for this setting "
                     "(with additive noise, or a bias for relu-like activations, the variance map grows without "
                     "bound where chi1 reaches 1; try --maximize-depth)")


def run_critical(args: argparse.Namespace) -> int:
    from deepprop.theory.meanfield import critical_sigma_w2

    if args.maximize_depth:
        from deepprop.advice import maximize_depth_result

        result = maximize_depth_result(common.prior_from_args(args), sigma_b2=args.sigma_b2)
        result["note"] = None if result["feasible"] else ("no setting in the search box keeps a bounded signal "
                                                          "(the fixed point q* within the advice's range)")
        if args.json:
            common.print_json(result, schema=MAXIMIZE_SCHEMA, missing_reason="infeasible")
        elif not result["feasible"]:
            print("no bounded-signal setting found in the search box")
        else:
            print(f"deepest setting: sigma_w2 = {result['sigma_w2']:.6f}, sigma_b2 = {result['sigma_b2']:.6f}, "
                  f"xi_c = {result['xi_c']:.4g}, max depth ~ {result['max_depth']:.4g} ({result['phase']})")
        return 0
    if args.sigma_b2 is None:
        raise UsageError("deepprop critical: error: the following arguments are required: --sigma-b2")
    prior = common.prior_from_args(args)
    sw2 = float(critical_sigma_w2(prior))
    result = {"activation": args.activation, "sigma_b2": args.sigma_b2, **common.noise_record(prior),
              "sigma_w2": sw2 if math.isfinite(sw2) else None, "note": None}
    if not math.isfinite(sw2):
        result["note"] = NO_CRITICAL_POINT
        result["sigma_w2_reason"] = "no_critical_point"
    if args.json:
        common.print_json(result, schema=CRITICAL_SCHEMA)
    elif result["sigma_w2"] is None:
        print(f"no critical point: {result['note']}")
    else:
        print(f"critical sigma_w2 = {sw2:.6f}  ({args.activation}, sigma_b2 = {args.sigma_b2:g}, "
              f"keep_rate = {args.keep_rate:g})")
    return 0


def run_phase(args: argparse.Namespace) -> int:
    from deepprop.grid_export import check_export_path, export, phase_diagram_resumable
    from deepprop.theory.grid import check_grid_memory

    out = check_export_path(args.out)
    common.check_device(args.device)
    check_grid_memory(args.sigma_w2.size, args.sigma_b2.size)
    n = args.sigma_w2.size * args.sigma_b2.size
    if args.progress and not args.json:
        print(f"computing {n} grid points ({args.activation}) ...", file=sys.stderr)
    t0 = time.perf_counter()
    blocks = -(-n // args.block_points)  # the callback corrects it if the grid splits otherwise
    with common.bar(args, desc=f"phase grid ({args.activation})", unit="block", total=blocks) as bar:
        ds = phase_diagram_resumable(
            common.prior_from_args(args, sigma_w2=1.0, sigma_b2=0.0), args.sigma_w2, args.sigma_b2,
            work_dir=out.parent, block_points=args.block_points, depth_multiple=args.depth_multiple,
            device=args.device, progress=lambda done, total: (setattr(bar, "total", total), bar.update(done - bar.n)),
        )
    path = export(ds, out)
    phases = ("ordered", "critical", "chaotic", "unbounded", "unsolved")
    counts = {p: int((ds["phase"].values == p).sum()) for p in phases}
    seconds = time.perf_counter() - t0
    if args.json:
        common.print_json({"out": str(path), "points": n, "phases": counts, "seconds": round(seconds, 3)})
    else:
        print(f"wrote {path} ({n} points in {seconds:.1f} s; " + ", ".join(f"{k} {v}" for k, v in counts.items())
              + ")")
    return 0


def run_figures(args: argparse.Namespace) -> int:
    from deepprop.validation import check_output_dir

    common.headless_plots()
    common.check_device(args.device)
    out = check_output_dir(args.out)
    from deepprop.plots.theory import figure1, figure2, figure3

    steps = [(f.__name__, lambda f=f: [f(out, args.quick)]) for f in (figure1, figure2, figure3)]
    if args.simulation:
        from deepprop.plots.simulation import FIGURES

        steps += [(draw.__name__, lambda run=run, draw=draw: [draw(run(device=args.device), out)])
                  for run, draw in FIGURES]
    paths: list[Path] = []
    with common.bar(args, total=len(steps), desc="figures", unit="figure") as bar:
        for name, draw in steps:
            bar.set_postfix_str(name, refresh=True)
            with common.quiet_stderr(args):
                paths += draw()
            bar.update(1)
    if args.json:
        common.print_json({"out": str(out), "figures": [str(p) for p in paths]})
        return 0
    for path in paths:
        print(path)
    return 0
