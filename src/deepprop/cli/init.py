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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from deepprop.cli import common
from deepprop.errors import ParameterError
from deepprop.prior import NOISE_FIELDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("advise", help="recommend a (noise-aware) critical initialisation",
                       description="Recommend sigma_w2, sigma_b2 for an activation and noise model.")
    common.add_prior_options(p, activation=None, activation_required=True,
                             activation_help="activation name (tanh, relu, erf, gelu, ...)",
                             sigma_b2=dict(type=common.nonnegative_float, default=None, help="bias variance >= 0 "
                                           "(default: 0 for the ReLU family, 0.05 for smooth activations)"))
    p.add_argument("--depth", type=common.positive_int, default=None, help="network depth to give a verdict for")
    common.add_json(p)
    p.set_defaults(func=run_advise)

    d = sub.add_parser("diagnose", help="mean-field diagnosis of a model's current initialisation",
                       description="Import path/to/model.py, build ClassName() and diagnose it.")
    d.add_argument("model", metavar="PATH:CLASS", help="python file and class, e.g. models/mlp.py:DeepMLP")
    common.add_prior_options(d, activation=None, activation_help="override the activation read from the model",
                             keep_rate_default=None, extra_noise=False)
    d.add_argument("--input-shape", dest="example_input", type=common.input_shape, default=None, metavar="C,H,W",
                   help="shape of one input example (needed for a model whose first layer is not Linear)")
    common.add_json(d)
    d.set_defaults(func=run_diagnose)


@contextmanager
def advice_notes() -> Iterator[list[str]]:
    """Collect the advice's warnings (:class:`deepprop.advice.AdviceWarning`) instead of printing them on
    stderr: the command shows each as one ``note:`` line of its text output (its JSON has them in the
    ``warning`` field already)."""
    import warnings

    from deepprop.advice import AdviceWarning

    notes: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AdviceWarning)
        yield notes
    for w in caught:
        if issubclass(w.category, AdviceWarning):
            notes.append(" ".join(str(w.message).split()))
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def print_notes(notes: list[str]) -> None:
    for note in dict.fromkeys(notes):
        print(f"note: {note}")


def run_advise(args: argparse.Namespace) -> int:
    from deepprop.advice import critical_init

    with advice_notes() as notes:
        r = critical_init(common.prior_from_args(args), sigma_b2=args.sigma_b2, depth=args.depth)
    if args.json:
        critical = r.exact and r.xi_c == float("inf")
        common.print_json(r, reasons={"xi_c": "critical", "max_depth": "critical"} if critical else None)
        return 0
    print(f"sigma_w2  = {r.sigma_w2:.6g}\nsigma_b2  = {r.sigma_b2:.6g}\nchi_1     = {r.chi1:.6g}\n"
          f"xi_c      = {r.xi_c:.6g}\nmax depth = {r.max_depth:.6g}\nexact     = {r.exact}\n")
    print(r.explanation)
    print_notes(notes)
    return 0


def _failure(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r})"
    return f"{type(exc).__name__}: {exc}"


def _call_user_code(spec: str, what: str, call):
    """Run the user's code; anything it raises (including SystemExit) is a one-line error naming the model."""
    try:
        return call()
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's file: report, never trace back or exit
        raise ParameterError("model", f"{spec}: {what} failed: {_failure(exc)}") from exc


def load_model(spec: str, seed: int = 0):
    """Import ``path/to/model.py:ClassName`` and return ``ClassName()``, a torch module whose parameters
    hold real values; built under ``torch.manual_seed(seed)`` (the caller's random state left as it was), so
    that the same command on the same file diagnoses the same weights."""
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
        _call_user_code(spec, f"importing {path_text}", lambda: mod_spec.loader.exec_module(module))
    finally:
        sys.path.pop(0)
    cls = getattr(module, cls_name, None)
    if cls is None:
        raise ParameterError("model", f"{path_text} has no {cls_name!r}")
    if not callable(cls):
        raise ParameterError("model", f"{spec}: {cls_name} is a {type(cls).__name__}, not a class")
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _call_user_code(spec, f"building {cls_name}()", cls)
    check_model(spec, model)
    return model


def check_model(spec: str, model) -> None:
    """The model is a torch module whose parameters hold finite values on a real device (not ``meta``)."""
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ParameterError("model", f"{spec}: builds a {type(model).__name__}, not a torch.nn.Module")
    for name, p in model.named_parameters():
        if p.is_meta:
            raise ParameterError("model", f"{spec}: parameter {name!r} is on the meta device (no values to "
                                          "diagnose); build the model on the CPU")
        if p.is_floating_point() and not bool(torch.isfinite(p.detach()).all()):
            bad = int((~torch.isfinite(p.detach())).sum())
            raise ParameterError("model", f"{spec}: parameter {name!r} holds {bad} non-finite value(s) (NaN or "
                                          "inf); the model cannot be diagnosed")


def run_diagnose(args: argparse.Namespace) -> int:
    import warnings

    from deepprop.integrations.pytorch import UnrecognisedModuleWarning, diagnose

    model = load_model(args.model)
    own = {"activation", *NOISE_FIELDS}
    example = None
    if args.example_input is not None:
        import torch

        example = torch.randn((2,) + tuple(args.example_input), generator=torch.Generator().manual_seed(0))
    try:
        with warnings.catch_warnings(), advice_notes() as notes:
            warnings.simplefilter("ignore", UnrecognisedModuleWarning)  # named in the report below instead
            d = diagnose(model, args.activation, example_input=example, **common.noise_kwargs(args))
    except ParameterError as exc:
        if exc.param in own and (exc.param != "activation" or args.activation is not None):
            raise  # about a flag the user typed
        # about the model's own modules (its layers, their weights, its activation), never a flag not typed
        if exc.param == "model":
            detail = exc.detail
        elif exc.param == "activation":
            detail = ("its activation could not be read from its modules (none, or several different ones); "
                      "give --activation")
        else:
            detail = f"the {exc.param} its layers give is out of range: {exc.detail}"
        raise ParameterError("model", f"{args.model}: {detail}") from exc
    if args.json:
        common.print_json(d)
    else:
        print(d)
        print_notes(notes)
    return 0


def add_maximize_depth_option(parser: argparse.ArgumentParser) -> None:
    """Add ``--maximize-depth`` to ``deepprop critical`` (which has the noise options already)."""
    parser.add_argument("--maximize-depth", action="store_true",
                        help="return the bounded-signal (sigma_w2, sigma_b2) with the largest xi_c instead "
                             "of the chi_1 = 1 point (the deepest trainable setting; needed when noise "
                             "removes the critical point)")
