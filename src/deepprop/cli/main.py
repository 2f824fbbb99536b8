"""Entry point of the ``deepprop`` command.

Every command module exposes ``register(subparsers)``; adding a command means adding its module name
to ``COMMAND_MODULES``. Errors in user input end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from deepprop.errors import ParameterError

COMMAND_MODULES: tuple[str, ...] = ("theory", "sweep", "init", "simulate")

EXIT_USAGE = 2


class UsageError(Exception):
    """Raised by argument parsing; carries a one-line message."""


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump) and never exit from inside parsing."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="deepprop",
        description="Mean-field signal propagation in deep networks: phases, depth scales, trainability.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"deepprop.cli.{name}").register(sub)
    return parser


def option_name(param: str) -> str:
    """``sigma_w2`` -> ``--sigma-w2``: errors from the library name the option the user typed."""
    return "--" + param.replace("_", "-")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except ParameterError as exc:
        print(f"deepprop: error: {option_name(exc.param)}: {exc.detail}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("deepprop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
