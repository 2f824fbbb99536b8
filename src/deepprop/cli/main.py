"""Entry point of the ``deepprop`` command.

Every command module exposes ``register(subparsers)``; adding a command means adding its module name
to ``COMMAND_MODULES``. Every error the user can cause (bad arguments, ParameterError, DatasetError,
StoreError, a missing optional extra, an unreachable Ray cluster, an unwritable output path) ends in
:func:`report_error`: one line on stderr naming the option or file, and exit code 2. No command module
catches errors itself.
"""

from __future__ import annotations

import argparse
import importlib
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from deepprop.cli import common
from deepprop.cli.common import UsageError
from deepprop.errors import DeeppropError, ParameterError

COMMAND_MODULES: tuple[str, ...] = ("theory", "sweep", "init", "simulate", "reproduce", "profile")

EXIT_USAGE = 2
MAX_MESSAGE = 400


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump) and never exit from inside parsing."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="deepprop",
        description="Mean-field signal propagation in deep networks: phases, depth scales, trainability.",
    )
    from deepprop._version import __version__

    parser.add_argument("--version", action="version", version=f"deepprop {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"deepprop.cli.{name}").register(sub)
    for leaf in _leaves(parser):
        if "--quiet" not in leaf._option_string_actions:
            common.add_quiet(leaf)
    return parser


def _leaves(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command parser that runs something (no sub-commands of its own)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    return [leaf for p in dict.fromkeys(subs[0].choices.values()) for leaf in _leaves(p)]


def option_name(param: str) -> str:
    """``sigma_w2`` -> ``--sigma-w2``: errors from the library name the option the user typed."""
    return "--" + param.replace("_", "-")


def _leaf_parser(parser: argparse.ArgumentParser, args: argparse.Namespace | None) -> argparse.ArgumentParser:
    """The (sub)parser of the command that ran, found by following the chosen sub-commands."""
    current = parser
    while args is not None:
        subs = [a for a in current._actions if isinstance(a, argparse._SubParsersAction)]
        chosen = getattr(args, subs[0].dest, None) if subs else None
        if chosen is None or chosen not in subs[0].choices:
            break
        current = subs[0].choices[chosen]
    return current


def display_name(parser: argparse.ArgumentParser, args: argparse.Namespace | None, param: str) -> str:
    """How the user spelled library parameter ``param`` on this command: ``--keep-rate`` for
    ``keep_rates`` of a sweep, ``store`` for a positional; a parameter the command has no option for is
    named as it is (``sigma_w2``), never as a flag the user could not have typed."""
    leaf = _leaf_parser(parser, args)
    for action in leaf._actions:
        if action.dest in (param, f"cfg_{param}"):
            if action.option_strings:
                return max(action.option_strings, key=len)
            return action.dest
    flag = option_name(param)
    return flag if flag in leaf._option_string_actions else param


def one_line(text: str) -> str:
    """Collapse a (possibly multi-line) message into one line of at most MAX_MESSAGE characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= MAX_MESSAGE else line[: MAX_MESSAGE - 3] + "..."


def _is_ray_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] == "ray"


def _user_path_option(filename: str, parser: argparse.ArgumentParser,
                      args: argparse.Namespace | None) -> tuple[str, str] | None:
    """(option, value) of the path option whose file or folder ``filename`` belongs to: an error while
    writing a temporary file of ours beside ``--out grid.csv`` is reported as an error of ``--out``."""
    if args is None:
        return None
    leaf = _leaf_parser(parser, args)
    target = _absolute(filename)
    for action in leaf._actions:
        value = getattr(args, action.dest, None)
        if not isinstance(value, str) or not value or action.dest in ("func",):
            continue
        mine = _absolute(value)
        if target == mine or mine in target.parents or target.parent == mine.parent:
            name = max(action.option_strings, key=len) if action.option_strings else action.dest
            return name, value
    return None


def error_message(exc: BaseException, parser: argparse.ArgumentParser, args: argparse.Namespace | None) -> str | None:
    """The one-line message for an error the user caused, or None for a genuine bug (re-raised).

    Every message starts with the command that ran (``deepprop point: error:``) and names the option or
    file the user gave."""
    if isinstance(exc, UsageError):
        return one_line(str(exc))
    head = f"{_leaf_parser(parser, args).prog}: error:"
    if isinstance(exc, ParameterError):
        return f"{head} {display_name(parser, args, exc.param)}: {one_line(exc.detail)}"
    if isinstance(exc, DeeppropError):
        return f"{head} {one_line(str(exc))}"
    if isinstance(exc, sqlite3.DatabaseError):
        store = getattr(args, "store", None)
        return f"{head} store{f' {store}' if store else ''}: {one_line(str(exc))}"
    if isinstance(exc, ConnectionError) or _is_ray_error(exc):
        where = getattr(args, "cfg_ray_address", None)
        where_text = f"--ray-address {where}" if where else "ray"
        return f"{head} {where_text}: {type(exc).__name__}: {one_line(str(exc))}"
    if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
        what = one_line(exc.strerror or str(exc))
        if exc.filename is None:
            return f"{head} {what}"
        owner = _user_path_option(str(exc.filename), parser, args)
        if owner is None:
            return f"{head} {exc.filename}: {what}"
        option, value = owner
        if _absolute(value) == _absolute(exc.filename):
            return f"{head} {option}: {value}: {what}"
        return f"{head} {option}: cannot write {value}: {what}"  # a temporary file of ours: not named
    if isinstance(exc, MemoryError):
        return f"{head} out of memory (use a smaller grid, ensemble or chunk)"
    return None


def _absolute(path: object) -> Path:
    return Path(str(path)).expanduser().absolute()


def report_error(exc: BaseException, parser: argparse.ArgumentParser, args: argparse.Namespace | None) -> int:
    """Print one line for a user error and return exit code 2; re-raise anything else."""
    message = error_message(exc, parser, args)
    if message is None:
        raise exc
    print(message, file=sys.stderr)
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    parser = build_parser()
    args = None
    try:
        args = parser.parse_args(argv)
        prog = _leaf_parser(parser, args).prog

        def show(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
            print(f"{prog}: warning: {one_line(str(message))}", file=sys.stderr)

        with warnings.catch_warnings():  # a warning of the library (a discarded corrupted result) is one line too
            warnings.showwarning = show
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("deepprop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # noqa: BLE001 - every user error becomes one line; bugs are re-raised
        return report_error(exc, parser, args)


if __name__ == "__main__":
    raise SystemExit(main())
