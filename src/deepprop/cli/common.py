"""Argument types and output helpers shared by the command modules."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

import numpy as np

from deepprop.validation import parse_values


def finite_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return v


def nonnegative_float(text: str) -> float:
    v = finite_float(text)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be finite and >= 0, got {text!r}")
    return v


def positive_float(text: str) -> float:
    v = finite_float(text)
    if v <= 0:
        raise argparse.ArgumentTypeError(f"must be finite and > 0, got {text!r}")
    return v


def keep_rate(text: str) -> float:
    v = finite_float(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1] (probability of KEEPING a unit), got {text!r}")
    return v


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return v


def value_range(text: str) -> np.ndarray:
    """``START:STOP:NUM`` (inclusive, like numpy.linspace), or a single value, or a comma list."""
    try:
        values = parse_values(text)
    except ValueError:
        values = np.empty(0)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(
            f"expected START:STOP:NUM (NUM >= 1, inclusive like linspace) or V1,V2,..., got {text!r}"
        )
    return values


def nonnegative_range(text: str) -> np.ndarray:
    values = value_range(text)
    if np.any(values < 0):
        raise argparse.ArgumentTypeError(f"variances must be >= 0, got {text!r}")
    return values


def add_activation(parser: argparse.ArgumentParser, default: str = "tanh") -> None:
    from deepprop.activations import ACTIVATIONS

    parser.add_argument(
        "--activation",
        default=default,
        help=f"nonlinearity: one of {', '.join(ACTIVATIONS)} (default {default})",
    )


def add_noise(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("noise on each layer's input (follow-ups section 1)")
    group.add_argument(
        "--keep-rate",
        type=keep_rate,
        default=1.0,
        help="dropout KEEP probability rho in (0, 1]; 1 = no dropout (nn.Dropout(p) has rho = 1 - p)",
    )
    group.add_argument(
        "--noise-mult", type=nonnegative_float, default=0.0, metavar="S",
        help="std S >= 0 of multiplicative Gaussian noise eps ~ N(1, S^2) (mu2 = 1 + S^2)",
    )
    group.add_argument(
        "--noise-add", type=nonnegative_float, default=0.0, metavar="S",
        help="std S >= 0 of additive Gaussian noise on each layer's input",
    )


def noise_kwargs(args: argparse.Namespace) -> dict[str, float]:
    return {"keep_rate": args.keep_rate, "noise_mult": args.noise_mult, "noise_add": args.noise_add}


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        return _clean(value.item())
    return value


def print_json(obj: Any) -> None:
    """Strict JSON on stdout: non-finite numbers become null."""
    json.dump(_clean(obj), sys.stdout, indent=2, allow_nan=False)
    sys.stdout.write("\n")


def format_value(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def print_table(rows: list[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {format_value(value)}")
