"""``deepprop advise`` and ``deepprop diagnose``; the ``--maximize-depth`` option for ``deepprop critical``.

* ``deepprop advise --activation relu --keep-rate 0.8`` prints :func:`deepprop.advice.critical_init`.
* ``deepprop diagnose path/to/model.py:ClassName`` imports the file, builds ``ClassName()`` with no
  arguments and prints :func:`deepprop.integrations.pytorch.diagnose` for it.
* :func:`add_maximize_depth_option` gives ``deepprop critical`` a ``--maximize-depth`` flag (answered by
  :func:`deepprop.advice.maximize_depth_result`): the (sigma_w2, sigma_b2) with the largest xi_c, for
  when no critical point exists (noise) or the user wants the deepest trainable setting.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

from deepprop.cli import common
from deepprop.errors import ParameterError


def _noise_options(p: argparse.ArgumentParser, keep_default: float | None = 1.0) -> None:
    p.add_argument("--keep-rate", type=float, default=keep_default,
                   help="probability of KEEPING a unit (nn.Dropout(p) has keep rate 1 - p)")
    p.add_argument("--noise-mult", type=float, default=0.0, help="std s of noise eps ~ N(1, s^2)")
    p.add_argument("--noise-add", type=float, default=0.0, help="std of additive noise eps ~ N(0, s^2)")
    common.add_json(p)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("advise", help="recommend a (noise-aware) critical initialisation",
                       description="Recommend sigma_w2, sigma_b2 for an activation and noise model.")
    p.add_argument("--activation", required=True, help="activation name (tanh, relu, erf, gelu, ...)")
    p.add_argument("--sigma-b2", type=float, default=None,
                   help="bias variance (default: 0 for the ReLU family, 0.05 for smooth activations)")
    p.add_argument("--depth", type=int, default=None, help="network depth to give a verdict for")
    _noise_options(p)
    p.set_defaults(func=run_advise)

    d = sub.add_parser("diagnose", help="mean-field diagnosis of a model's current initialisation",
                       description="Import path/to/model.py, build ClassName() and diagnose it.")
    d.add_argument("model", metavar="PATH:CLASS", help="python file and class, e.g. models/mlp.py:DeepMLP")
    d.add_argument("--activation", default=None, help="override the activation read from the model")
    d.add_argument("--input-shape", dest="example_input", type=common.input_shape, default=None, metavar="C,H,W",
                   help="shape of one input example (needed for a model whose first layer is not Linear)")
    _noise_options(d, keep_default=None)
    d.set_defaults(func=run_diagnose)


def run_advise(args: argparse.Namespace) -> int:
    from deepprop.advice import critical_init

    r = critical_init(args.activation, keep_rate=args.keep_rate, noise_mult=args.noise_mult,
                      noise_add=args.noise_add, sigma_b2=args.sigma_b2, depth=args.depth)
    if args.json:
        critical = r.exact and r.xi_c == float("inf")
        common.print_json(r, reasons={"xi_c": "critical", "max_depth": "critical"} if critical else None)
        return 0
    print(f"sigma_w2  = {r.sigma_w2:.6g}\nsigma_b2  = {r.sigma_b2:.6g}\nchi_1     = {r.chi1:.6g}\n"
          f"xi_c      = {r.xi_c:.6g}\nmax depth = {r.max_depth:.6g}\nexact     = {r.exact}\n")
    print(r.explanation)
    return 0


def load_model(spec: str):
    """Import ``path/to/model.py:ClassName`` and return ``ClassName()``."""
    path_text, sep, cls_name = spec.rpartition(":")
    if not sep or not path_text or not cls_name:
        raise ParameterError("model", f"must be PATH.py:ClassName (got {spec!r})")
    path = Path(path_text)
    if not path.is_file():
        raise ParameterError("model", f"file not found: {path_text}")
    mod_spec = importlib.util.spec_from_file_location(f"deepprop_user_model_{path.stem}", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ParameterError("model", f"cannot import {path_text} as a python module")
    module = importlib.util.module_from_spec(mod_spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        mod_spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: report, do not trace back
        raise ParameterError("model", f"importing {path_text} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.path.pop(0)
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ParameterError("model", f"{path_text} has no {cls_name!r}")
    try:
        return cls()
    except TypeError as exc:
        raise ParameterError("model", f"{cls_name}() must build without arguments ({exc})") from exc


def run_diagnose(args: argparse.Namespace) -> int:
    import warnings

    from deepprop.integrations.pytorch import UnrecognisedModuleWarning, diagnose

    model = load_model(args.model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnrecognisedModuleWarning)  # named in the report below instead
        example = None
        if args.example_input is not None:
            import torch

            example = torch.randn((2,) + tuple(args.example_input), generator=torch.Generator().manual_seed(0))
        d = diagnose(model, args.activation, example_input=example, keep_rate=args.keep_rate,
                     noise_mult=args.noise_mult, noise_add=args.noise_add)
    if args.json:
        common.print_json(d)
    else:
        print(d)
    return 0


def add_maximize_depth_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--maximize-depth`` to ``deepprop critical`` (which has the noise options already)."""
    parser.add_argument("--maximize-depth", action="store_true",
                        help="return the bounded-signal (sigma_w2, sigma_b2) with the largest xi_c instead "
                             "of the chi_1 = 1 point (the deepest trainable setting; needed when noise "
                             "removes the critical point)")
