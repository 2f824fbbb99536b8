"""``deepprop profile FILE.py:Model --input-shape C,H,W``: the propagation profile of a PyTorch model.

Imports the file, builds ``Model()`` with no arguments (as ``deepprop diagnose`` does), and prints
:func:`deepprop.integrations.profile.profile` for it: per step the measured q, c and chi with their errors
beside the mean-field prediction and its label (exact / approximate / none), then the verdict. ``--json``
prints one strict-JSON object with the same rows (``rows``, the columns of ``Profile.to_frame()``) and a
``verdict`` block; ``--plot`` draws the profile figure, ``--csv`` writes the table.
"""

from __future__ import annotations

import argparse
import sys

from deepprop.cli import common


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profile", help="measured and predicted q, c, chi of every layer of a PyTorch model",
                       description="Import PATH.py, build ClassName() and profile it: per layer the measured "
                                   "q^l, c^l, chi^l over several initialisations beside the mean-field "
                                   "prediction, and a verdict.")
    p.add_argument("model", metavar="PATH:CLASS", help="python file and class, e.g. models/net.py:ResNet")
    p.add_argument("--input-shape", dest="example_input", type=common.input_shape, required=True, metavar="C,H,W",
                   help="shape of one input example, without the batch dimension (e.g. 3,32,32 or 784)")
    p.add_argument("--inits", type=common.positive_int, default=8, help="initialisations averaged (default 8)")
    p.add_argument("--pairs", type=common.positive_int, default=None,
                   help="Gaussian input pairs per initialisation (default 4; 2 for inputs of 1024 entries or more; "
                        "32 for a model with BatchNorm)")
    p.add_argument("--c0", type=common.finite_float, default=0.5, help="correlation of the input pairs (default 0.5)")
    p.add_argument("--seed", type=common.seed, default=0, help="random seed, 0 <= seed < 2**63 (default 0)")
    p.add_argument("--redraw", default="permute", choices=("permute", "reset"),
                   help="fresh initialisations: signed permutations of the weights (keeps their distribution; "
                        "default) or each module's reset_parameters() (PyTorch's default init)")
    p.add_argument("--eval", action="store_true", help="profile the model in eval mode (default: train mode, "
                                                       "so that Dropout acts)")
    p.add_argument("--no-jacobian", action="store_true", help="skip the end-to-end Jacobian spread")
    p.add_argument("--plot", default=None, metavar="PNG", help="draw the profile figure to this file")
    p.add_argument("--csv", default=None, metavar="CSV", help="write the table (with detail columns) to this file")
    common.add_json(p)
    p.set_defaults(func=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    import torch

    from deepprop.cli.init import load_model
    from deepprop.integrations.profile import profile
    from deepprop.validation import check_output_path

    # output files are checked before the model is built or profiled: a bad path costs nothing
    if args.csv:
        check_output_path(args.csv, param="csv", suffixes=(".csv",))
    if args.plot:
        check_output_path(args.plot, param="plot", suffixes=(".png", ".pdf", ".svg"))
    model = load_model(args.model, args.seed)
    model.train(not args.eval)
    example = torch.randn((2,) + tuple(args.example_input), generator=torch.Generator().manual_seed(args.seed))
    params = list(model.parameters()) if hasattr(model, "parameters") else []
    if params:
        example = example.to(dtype=params[0].dtype, device=params[0].device)
    bars = []  # opened at the first finished initialisation: a model refused up front draws no bar

    def advance(done: int, total: int) -> None:
        if not bars:
            bars.append(common.bar(args, total=total, desc="initialisations"))
        bars[0].update(done - bars[0].n)

    try:
        result = profile(model, example, inits=args.inits, pairs=args.pairs, c0=args.c0, seed=args.seed,
                         redraw=args.redraw, jacobian=not args.no_jacobian, progress=advance)
    finally:
        for b in bars:
            b.close()
    if args.csv:
        from deepprop.atomic import write_atomically

        write_atomically(args.csv, lambda tmp: result.to_frame(details=True).to_csv(tmp, index=False))
    if args.plot:
        common.headless_plots()
        from deepprop.plots.profile import profile_figure

        profile_figure(result, args.plot, title=args.model)
    if args.json:
        common.print_json(result)
    else:
        sys.stdout.write(str(result) + "\n")
    return 0
