"""Argument types and output helpers shared by the command modules."""

from __future__ import annotations

import argparse
import io
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from typing import Any

import numpy as np

from deepprop.results import format_number
from deepprop.validation import MAX_INT64, MAX_RANGE_VALUES, parse_values


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def _library_check(check, text: str):
    """Run a library validator on the parsed number; its ParameterError text becomes argparse's message,
    so the command line and the Python API say the same thing."""
    from deepprop.errors import ParameterError

    v = finite_float(text)
    try:
        check(v)
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None
    return v


def nonnegative_float(text: str) -> float:
    from deepprop.prior import check_finite_nonnegative

    return _library_check(lambda v: check_finite_nonnegative("value", v), text)


def positive_float(text: str) -> float:
    from deepprop.validation import check_positive

    return _library_check(lambda v: check_positive("value", v), text)


def fraction(text: str) -> float:
    v = finite_float(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text!r}")
    return v


def correlation(text: str) -> float:
    v = finite_float(text)
    if not -1 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be a correlation in [-1, 1], got {text!r}")
    return v


def int_range(minimum: int = 0, maximum: int = MAX_INT64):
    """An argparse type: an integer in [minimum, maximum] (default maximum 2**63 - 1: what every integer
    deepprop hands to torch, numpy or SQLite holds)."""

    def parse(text: str) -> int:
        try:
            v = int(text.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not minimum <= v <= maximum:
            allowed = f">= {minimum}" if maximum == MAX_INT64 else f"in [{minimum}, {maximum}]"
            if maximum == MAX_INT64 and v > maximum:
                allowed += " and < 2**63"
            raise argparse.ArgumentTypeError(f"expected an integer {allowed}, got {text!r}")
        return v

    parse.__name__ = "integer"
    return parse


positive_int = int_range(1)
nonnegative_int = int_range(0)
seed = int_range(0, MAX_INT64)
def input_shape(text: str) -> tuple[int, ...]:
    """``3,32,32`` (or ``3x32x32``): the shape of one input example, without the batch dimension."""
    try:
        shape = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected positive integers like 3,32,32 (got {text!r})") from None
    if not shape or any(s < 1 for s in shape):
        raise argparse.ArgumentTypeError(f"expected positive integers like 3,32,32 (got {text!r})")
    return shape


def value_range(text: str) -> np.ndarray:
    """``START:STOP:NUM`` (inclusive, like numpy.linspace), or a single value, or a comma list."""
    try:
        values = parse_values(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; expected START:STOP:NUM (inclusive like linspace, NUM <= "
                                         f"{MAX_RANGE_VALUES}) or V1,V2,..., got {text!r}") from None
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(
            f"expected START:STOP:NUM (NUM >= 1, inclusive like linspace) or V1,V2,... of finite numbers, "
            f"got {text!r}"
        )
    return values


def nonnegative_range(text: str) -> np.ndarray:
    values = value_range(text)
    if np.any(values < 0):
        raise argparse.ArgumentTypeError(f"variances must be >= 0, got {text!r}")
    return values


def path_text(text: str) -> str:
    """A path option: not empty (an empty path is never "the current directory")."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (name a file or directory)")
    return text


def activation_name(text: str) -> str:
    """An activation name the engine knows (checked while parsing, so the message is argparse's one line)."""
    from deepprop.activations import get_activation
    from deepprop.errors import ParameterError

    try:
        return get_activation(text).name
    except ParameterError as exc:
        raise argparse.ArgumentTypeError(exc.detail) from None


def add_activation(parser: argparse.ArgumentParser, default: str | None = "tanh", *, required: bool = False,
                   help: str | None = None) -> None:
    from deepprop.activations import ACTIVATIONS

    parser.add_argument(
        "--activation",
        type=activation_name,
        default=default,
        required=required,
        help=help or f"nonlinearity: one of {', '.join(ACTIVATIONS)}" + (f" (default {default})" if default else ""),
    )


KIND_OPTIONS: dict[str, tuple[str | None, str]] = {
    "Dropout": (None, "dropout KEEP probability rho in (0, 1]; 1 = no dropout (nn.Dropout(p) has rho = 1 - p)"),
    "GaussianMultiplicative": ("S", "std S >= 0 of multiplicative Gaussian noise eps ~ N(1, S^2) (mu2 = 1 + S^2)"),
    "GaussianAdditive": ("S", "std S >= 0 of additive Gaussian noise on each layer's input"),
    "UniformDropout": ("A", "half-width A in [0, 1] of uniform (continuous) dropout eps ~ U(1 - A, 1 + A)"),
}
"""(metavar, help) of the option of each kind of noise, by class name; a kind not listed here gets its option
all the same, with the first sentence of its docstring as help."""


class UsageError(Exception):
    """A command-line usage error; carries the one-line message the command prints (exit code 2)."""


def _noise_kinds() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """(the standard kinds, the extra kinds) of :mod:`deepprop.noise_models`: each has an option named after
    its parameter (``--keep-rate``, ``--noise-mult``, ``--noise-add``, ``--uniform-dropout``)."""
    from deepprop import noise_models

    return noise_models.STANDARD_KINDS, noise_models.EXTRA_KINDS


def _flag(kind: type) -> str:
    return "--" + kind.parameter_name.replace("_", "-")


def _kind_option(kind: type) -> tuple[str | None, str]:
    if kind.__name__ in KIND_OPTIONS:
        return KIND_OPTIONS[kind.__name__]
    text = " ".join((kind.__doc__ or kind.__name__).replace("``", "").split())
    return None, text.split(". ")[0].rstrip(".")


def _kind_value(kind: type):
    """An argparse type: the kind's parameter, checked by the kind itself (its message, its range)."""

    def parse(text: str) -> float:
        return _library_check(lambda v: kind(v).checked(), text)

    parse.__name__ = kind.parameter_name
    return parse


def _add_grid_options(parser: argparse.ArgumentParser) -> None:
    for flag, (key, typ, help_) in grid_flags().items():
        parser.add_argument(flag, dest=f"cfg_{key}", type=typ, default=None, help=help_,
                            metavar=flag[2:].upper().replace("-", "_"))


def grid_flags() -> dict[str, tuple[str, type, str]]:
    """The prior's options of ``sweep run`` (flag -> config key, type, help): they override the sweep's config
    (dest ``cfg_<key>``, None when unset), which checks the values itself (its messages name the config key,
    shown as the flag). The noise every network shares is one float option per standard kind."""
    standard, _ = _noise_kinds()
    shared = {_flag(kind): (kind.parameter_name, float, _kind_option(kind)[1].replace(" >= 0", "") + " (default 0)")
              for kind in standard if kind.neutral == 0.0}
    return {
        "--activation": ("activation", str, "nonlinearity (default tanh)"),
        "--sigma-b2": ("sigma_b2", float, "bias variance (default 0.05)"),
        "--keep-rate": ("keep_rates", str, "dropout KEEP rate(s) rho in (0, 1], e.g. 0.99 or 0.99,0.98 (default 1: "
                                           "no dropout); nn.Dropout(p) has rho = 1 - p"),
        **shared,
        "--sigma-w2": ("sigma_w2", str, "sigma_w^2 grid: start:stop:count (inclusive) or a,b,c (default 1,2,3)"),
    }


def add_prior_options(
    parser: argparse.ArgumentParser,
    *,
    sigma_w2: dict[str, Any] | None = None,
    sigma_b2: dict[str, Any] | None = None,
    activation: str | None = "tanh",
    activation_required: bool = False,
    activation_help: str | None = None,
    keep_rate_default: float | None = 1.0,
    extra_noise: bool = True,
    grid: bool = False,
) -> None:
    """The options that describe a network (:class:`deepprop.prior.NetworkPrior`), read back by
    :func:`prior_from_args`: ``--activation``, ``--sigma-w2`` / ``--sigma-b2`` (each given as the
    ``add_argument`` keywords of the command, or left out where the command chooses it) and one option per
    kind of noise, checked by the kind: the standard three (``--keep-rate``, default ``keep_rate_default``,
    None: read from a model; ``--noise-mult``, ``--noise-add``, default 0) and, with ``extra_noise``, the
    extra kinds (``--uniform-dropout``; default none).

    ``grid=True`` (``sweep run``): the options override a sweep config (:func:`grid_flags`)."""
    if grid:
        _add_grid_options(parser)
        return
    add_activation(parser, activation, required=activation_required, help=activation_help)
    for name, spec in (("sigma_w2", sigma_w2), ("sigma_b2", sigma_b2)):
        if spec is not None:
            parser.add_argument("--" + name.replace("_", "-"), **spec)
    group = parser.add_argument_group("noise on each layer's input (follow-ups section 1)")
    standard, extra = _noise_kinds()
    for kind in standard + (extra if extra_noise else ()):
        metavar, help_ = _kind_option(kind)
        if kind in standard:
            default = keep_rate_default if kind.parameter_name == "keep_rate" else kind.neutral
        else:
            default, help_ = None, help_ + " (default: none)"
        group.add_argument(_flag(kind), dest=kind.parameter_name, type=_kind_value(kind), default=default,
                           metavar=metavar, help=help_)


def noise_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The noise options as the keywords of :meth:`deepprop.prior.NetworkPrior.build` (extra kinds given
    on the command line as ``extra_noise``; left out when there are none)."""
    standard, extra = _noise_kinds()
    out: dict[str, Any] = {kind.parameter_name: getattr(args, kind.parameter_name) for kind in standard}
    given = tuple(kind(getattr(args, kind.parameter_name)) for kind in extra
                  if getattr(args, kind.parameter_name, None) is not None)
    if given:
        out["extra_noise"] = given
    return out


def prior_from_args(args: argparse.Namespace, **numbers: Any):
    """The :class:`~deepprop.prior.NetworkPrior` the options of :func:`add_prior_options` describe;
    ``numbers`` (sigma_w2, sigma_b2) replace the options' values (a grid's base prior). A command that
    chooses sigma_w2 (or sigma_b2) itself has no option for it: the prior then holds 1 (or 0), which the
    library functions of such commands do not use."""
    from deepprop.prior import NetworkPrior

    given = {name: getattr(args, name, None) for name in ("sigma_w2", "sigma_b2")}
    sigma = {**{k: v for k, v in given.items() if v is not None}, **numbers}
    return NetworkPrior.build(args.activation, sigma.get("sigma_w2", 1.0), sigma.get("sigma_b2", 0.0),
                              **noise_kwargs(args))


def noise_record(prior) -> dict[str, float]:
    """The prior's noise numbers by name (the standard three, then any extra kind's), as
    floats: how a command's output names the noise it ran with."""
    return {name: float(value) for name, value in prior.noise.numbers().items()}


def print_json(obj: Any, reasons: dict[str, str] | None = None, *, schema: tuple[str, ...] = (),
               missing_reason: str = "not_applicable") -> None:
    """Strict JSON on stdout through :func:`deepprop.jsonout.to_json`: non-finite numbers are null with a
    ``<key>_reason`` beside them (``reasons`` overrides named top-level reasons); every key of ``schema``
    is present, null with ``missing_reason`` where the result has no value for it."""
    from deepprop.jsonout import to_json, with_schema

    if schema:
        obj = with_schema(obj, schema, missing_reason)
    sys.stdout.write(to_json(obj, reasons=reasons) + "\n")


def add_json(parser: argparse.ArgumentParser, what: str = "print one strict-JSON object instead of text") -> None:
    parser.add_argument("--json", action="store_true", help=what + " (non-finite numbers: null + KEY_reason)")


def add_quiet(parser: argparse.ArgumentParser, what: str = "no progress bar or progress messages on stderr") -> None:
    """``--quiet``, resolved by the parser: every command reads ``args.progress`` (False with --quiet)."""
    parser.add_argument("--quiet", dest="progress", action="store_false", help=what)


def headless_plots() -> None:
    """Select matplotlib's file-only Agg backend before a command draws (the library never forces one);
    a missing matplotlib is a one-line error naming the ``plots`` extra."""
    from deepprop.errors import require

    require("matplotlib", "plots", "drawing figures").use("Agg")


def print_table(rows: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {format_number(value)}")


def check_device(device: str | None, param: str = "device") -> None:
    """Refuse ``cuda`` before any work where PyTorch sees no CUDA device (``auto`` and ``cpu`` always work)."""
    from deepprop.validation import check_device as check

    check(device, param)


def bar(args: argparse.Namespace, **kwargs: Any):
    """An overall tqdm progress bar with ETA on stderr, hidden with --quiet."""
    from tqdm import tqdm

    return tqdm(file=sys.stderr, disable=not args.progress, dynamic_ncols=True, **kwargs)


@contextmanager
def quiet_stderr(args: argparse.Namespace) -> Iterator[None]:
    """With --quiet, swallow what library code writes to stderr meanwhile (its own progress bars);
    errors are exceptions and still reach the one-line handler."""
    if args.progress:
        yield
        return
    with redirect_stderr(io.StringIO()):
        yield
