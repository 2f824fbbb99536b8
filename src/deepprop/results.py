"""How results leave the library: one serialization mechanism, one number formatter, one progress callback.

* :class:`Result` - the base of deepprop's result records. ``to_dict()`` is the one way a result becomes
  plain JSON values: the record's :meth:`Result.record` (by default its dataclass fields plus the names in
  ``RECORD_EXTRA``) through the strict serializer :func:`deepprop.jsonout.strict` (non-finite numbers are
  ``None`` with ``<key>_reason`` beside them). A result whose JSON has its own shape overrides ``record``
  and nothing else.
* :func:`format_number` - every number a person reads (tables, explanations): ``-`` for none, ``%g`` with
  a given number of significant digits, ``inf`` / ``nan`` spelled out.
* :data:`Progress` - long computations report ``progress(done, total)`` after each unit of work; nothing in
  the library draws a bar or writes to stderr (the command line passes a callback that does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

from deepprop.jsonout import strict

Progress = Callable[[int, int], None]
"""``progress(done, total)``: called after each finished unit (block, layer, ...) of a long computation."""


def report_progress(progress: Progress | None, done: int, total: int) -> None:
    """Call ``progress(done, total)`` where a callback was given."""
    if progress is not None:
        progress(done, total)


class Result:
    """Mixin of result dataclasses: ``to_dict()`` = :func:`~deepprop.jsonout.strict` of :meth:`record`."""

    RECORD_EXTRA: ClassVar[tuple[str, ...]] = ()
    """Properties appended to the dataclass fields in the default :meth:`record`."""

    RECORD_SKIP: ClassVar[tuple[str, ...]] = ()
    """Dataclass fields left out of the default :meth:`record` (arrays kept for figures, private state)."""

    def record(self) -> dict[str, Any]:
        """The raw values of the JSON record (before the strict serializer)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)  # type: ignore[arg-type]
               if f.name not in self.RECORD_SKIP and not f.name.startswith("_")}
        out.update({name: getattr(self, name) for name in self.RECORD_EXTRA})
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: non-finite numbers are ``None`` with ``<key>_reason`` beside them."""
        return strict(self.record())


def format_number(value: Any, digits: int = 6) -> str:
    """A number as a person reads it: ``-`` for None, ``digits`` significant digits for a float (``inf``,
    ``-inf``, ``nan`` spelled out), integers and everything else as ``str``."""
    if value is None:
        return "-"
    if isinstance(value, float | np.floating):
        return f"{float(value):.{digits}g}"
    return str(value)
