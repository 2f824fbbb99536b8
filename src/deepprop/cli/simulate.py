"""``deepprop simulate forward|gradients|jacobian``: finite random networks beside the theory."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from deepprop.cli import common
from deepprop.networks import DTYPES, WEIGHT_KINDS
from deepprop.results import format_number as _fmt
from deepprop.theory.meanfield import DEFAULT_Q0


def _common(p: argparse.ArgumentParser, *, sweep: bool, width: int, depth: int, networks: int) -> None:
    sigma_w2 = dict(type=common.positive_float, required=True, help="weight variance sigma_w^2 > 0")
    if sweep:
        sigma_w2.update(nargs="+", help="weight variance(s) sigma_w^2 > 0")
    common.add_prior_options(p, sigma_w2=sigma_w2, sigma_b2=dict(type=common.nonnegative_float, required=True,
                                                                 help="bias variance sigma_b^2 >= 0"))
    p.add_argument("--width", type=common.positive_int, default=width, help=f"layer width N >= 1 (default {width})")
    p.add_argument("--depth", type=common.positive_int, default=depth,
                   help=f"number of layers L >= 1 (default {depth})")
    p.add_argument("--weights", choices=WEIGHT_KINDS, default="gaussian")
    p.add_argument("--networks", type=common.positive_int, default=networks,
                   help=f"networks in the ensemble, >= 1 (default {networks})")
    p.add_argument("--seed", type=common.seed, default=0, help="random seed, 0 <= S < 2**63 (default 0)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    common.add_json(p, "print the result as JSON")
    common.add_quiet(p)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``simulate`` and its three subcommands."""
    sim = subparsers.add_parser("simulate", help="measure finite random networks against the theory")
    sub = sim.add_subparsers(dest="simulate_command", metavar="EXPERIMENT")
    sub.required = True

    fwd = sub.add_parser("forward", help="q^l and c^l of input pairs layer by layer (figs. 1-3)")
    _common(fwd, sweep=False, width=1000, depth=30, networks=4)
    fwd.add_argument("--q0", type=common.positive_float, default=DEFAULT_Q0,
                     help=f"layer-0 pre-activation variance > 0 (default {DEFAULT_Q0:g}, as in the library)")
    fwd.add_argument("--c0", type=common.correlation, default=0.6,
                     help="layer-0 pre-activation correlation in [-1, 1] (default 0.6)")
    fwd.add_argument("--pairs", type=common.positive_int, default=16, help="input pairs per network (default 16)")
    fwd.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    fwd.set_defaults(func=_forward)

    grd = sub.add_parser("gradients", help="per-layer ||dE/dW^l||^2 on real data (fig. 4)")
    _common(grd, sweep=True, width=300, depth=240, networks=2)
    grd.add_argument("--dataset", default="digits", help="digits | fashion-mnist | mnist | cifar10 | synthetic")
    grd.add_argument("--data-dir", type=common.path_text, default=None, help="directory with the dataset files")
    grd.add_argument("--batch-size", type=common.int_range(2), default=128, help="inputs per batch, >= 2")
    grd.add_argument("--backprop", choices=("shared", "independent"), default="shared",
                     help="shared: real autograd; independent: fresh backward weights and masks")
    grd.add_argument("--chunk", type=common.positive_int, default=None, help="sigma_w2 values per batch (default all)")
    grd.add_argument("--fit-skip", type=common.nonnegative_int, default=None,
                     help="layers left out at each end of the fit, >= 0 and leaving at least 3 layers "
                     "(default depth // 10, at least 2)")
    grd.add_argument("--checkpoint", type=common.path_text, default=None,
                     help="JSON file (e.g. grad.json; its folder must exist) where finished sigma_w2 values are "
                     "saved, to resume an interrupted sweep")
    grd.add_argument("--dtype", choices=tuple(DTYPES), default="float32")
    grd.set_defaults(func=_gradients)

    jac = sub.add_parser("jacobian", help="input-output Jacobian spectrum and mutual information")
    _common(jac, sweep=True, width=300, depth=10, networks=2)
    jac.add_argument("--input-q", type=common.positive_float, default=None,
                     help="input pre-activation variance > 0 (default q*)")
    jac.add_argument("--signal-var", type=common.positive_float, default=1.0, help="s_x^2 > 0 of the Gaussian input")
    jac.add_argument("--noise-var", type=common.positive_float, default=1.0, help="s_n^2 > 0 of the readout noise")
    jac.add_argument("--dtype", choices=tuple(DTYPES), default="float64")
    jac.set_defaults(func=_jacobian)


def _ensemble(args: argparse.Namespace) -> dict[str, Any]:
    """The ensemble's options (the network itself is :func:`common.prior_from_args`)."""
    common.check_device(args.device)
    return {"weights": args.weights, "networks": args.networks, "seed": args.seed, "device": args.device,
            "dtype": args.dtype}


def _emit(args: argparse.Namespace, data: dict[str, Any], lines: list[str]) -> int:
    if args.json:
        common.print_json(data)
    else:
        sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _forward(args: argparse.Namespace) -> int:
    from deepprop.simulate.forward import simulate_forward

    res = simulate_forward(common.prior_from_args(args), width=args.width, depth=args.depth,
                           q0=args.q0, c0=args.c0, pairs=args.pairs, **_ensemble(args))
    d = res.to_dict()
    lines = [f"{'layer':>5} {'q':>11} {'q_theory':>11} {'c':>9} {'c_theory':>9}"]
    for r in d["layers"]:
        lines.append(f"{r['layer']:>5} {_fmt(r['q']):>11} {_fmt(r['q_theory']):>11} {_fmt(r['c']):>9} "
                     f"{_fmt(r['c_theory']):>9}")
    for name in ("xi_q", "xi_c"):
        why = d.get(f"{name}_fit_reason")
        lines.append(f"{name}: fit {_fmt(d[f'{name}_fit'])}" + (f" ({why})" if why else "")
                     + f"  theory {_fmt(d[name])}")
    return _emit(args, d, lines)


def _gradients(args: argparse.Namespace) -> int:
    from deepprop.simulate.gradients import simulate_gradients
    from deepprop.validation import check_fit_window

    if args.fit_skip is not None:
        check_fit_window("fit_skip", args.fit_skip, args.depth)
    if args.checkpoint is not None:
        from deepprop.validation import check_output_path

        check_output_path(args.checkpoint, param="checkpoint", suffixes=(".json",))

    res = simulate_gradients(common.prior_from_args(args), width=args.width, depth=args.depth,
                             dataset=args.dataset, data_dir=args.data_dir, batch_size=args.batch_size,
                             backprop=args.backprop, chunk=args.chunk, fit_skip=args.fit_skip,
                             checkpoint=args.checkpoint, progress=args.progress, **_ensemble(args))
    lines = [f"{'sigma_w2':>9} {'xi_grad_fit':>12} {'xi_grad':>10} {'batch_fit':>10} {'typical_fit':>11} "
             f"{'typical':>9} {'xi_cov_fit':>11} {'xi_cov':>9}  finite"]
    for p in res.points:
        pd = p.to_dict()
        lines.append(f"{_fmt(pd['sigma_w2']):>9} {_fmt(pd['xi_grad_fit']):>12} {_fmt(pd['xi_grad']):>10} "
                     f"{_fmt(pd['xi_grad_fit_batch']):>10} {_fmt(pd['xi_grad_fit_typical']):>11} "
                     f"{_fmt(pd['xi_grad_typical']):>9} {_fmt(pd['xi_cov_fit']):>11} {_fmt(pd['xi_cov']):>9}  "
                     f"{pd['finite']}")
    lines.append(f"variance vs mean across networks: var ~ mean^{_fmt(res.var_mean_exponent)}")
    return _emit(args, res.to_dict(), lines)


def _jacobian(args: argparse.Namespace) -> int:
    from deepprop.simulate.jacobian import jacobian_spectrum

    res = jacobian_spectrum(common.prior_from_args(args), width=args.width, depth=args.depth,
                            input_q=args.input_q, signal_var=args.signal_var, noise_var=args.noise_var,
                            **_ensemble(args))
    d = res.to_dict()
    lines = [f"{'sigma_w2':>9} {'<s^2>':>11} {'chi1^L':>11} {'spread':>9} {'theory':>9} {'I (nats)':>10} "
             f"{'I_eq/N':>8} {'theory':>8}"]
    for p in d["points"]:
        lines.append(f"{_fmt(p['sigma_w2']):>9} {_fmt(p['mean_sq_singular']):>11} {_fmt(p['chi1_L']):>11} "
                     f"{_fmt(p['spread']):>9} {_fmt(p['theory_spread']):>9} {_fmt(p['mutual_information']):>10} "
                     f"{_fmt(p['mi_equal_gain']):>8} {_fmt(p['mi_equal_gain_theory']):>8}")
    edge = (" - the edge of the grid (or fewer than 3 values): not a measured maximum, it may lie beyond"
            if d["mi_peak_at_grid_edge"] else "")
    lines.append(f"mutual information peaks at sigma_w2 = {_fmt(d['mi_peak_sigma_w2'])}{edge} "
                 f"(critical sigma_w2 = {_fmt(d['critical_sigma_w2'])})")
    return _emit(args, d, lines)
