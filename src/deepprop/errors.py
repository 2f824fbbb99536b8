"""The exceptions of deepprop: one base class, a few kinds of failure.

Every error a user can cause derives from :class:`DeeppropError`; the command line turns each into one
line on stderr and exit code 2 (``deepprop.cli.main``), and the Python API raises them with the same
message.
"""

from __future__ import annotations


class DeeppropError(Exception):
    """Base class of every error deepprop raises on purpose (bad input, missing data, bad store)."""


class ParameterError(DeeppropError, ValueError):
    """A parameter is outside its allowed range.

    ``param`` is the Python keyword name (``sigma_w2``); the CLI turns it into the option name
    (``--sigma-w2``) so that the one-line message always names what the user typed.
    """

    def __init__(self, param: str, message: str):
        self.param = param
        self.detail = message
        super().__init__(f"{param}: {message}")


class DatasetError(DeeppropError, RuntimeError):
    """A dataset cannot be read or fetched (missing files while offline, bad checksum, bad format)."""


class StoreError(DeeppropError, RuntimeError):
    """A results store cannot be used: not a deepprop store, corrupt, or written by another sweep."""


class CheckpointError(DeeppropError, RuntimeError):
    """A saved checkpoint or result cannot be read back (corrupted, truncated, or not deepprop's)."""


class MissingExtraError(DeeppropError, ImportError):
    """An optional dependency is not installed; ``extra`` names the ``pip install 'deepprop[extra]'`` to run."""

    def __init__(self, extra: str, what: str):
        self.extra = extra
        super().__init__(f"{what} needs the optional extra {extra!r}: pip install 'deepprop[{extra}]'")


def require(module: str, extra: str, what: str):
    """Import and return ``module``, or raise :class:`MissingExtraError` naming the extra that provides it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(extra, what) from exc


def warn_at_caller(message: str, category: type[Warning]) -> None:
    """``warnings.warn`` attributed to the first frame outside deepprop (the user's line, however deep in the
    library the warning arose; decorators such as ``torch.no_grad`` that wrap our functions are skipped too),
    so that the shown location and warning filters by module point at the call."""
    import sys
    import warnings

    frame, level = sys._getframe(1), 2
    while frame is not None and _is_wrapper(frame.f_globals.get("__name__", "")):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


_WRAPPERS = ("deepprop", "torch.utils._contextlib", "contextlib", "functools")


def _is_wrapper(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in _WRAPPERS)
