"""The one JSON serializer of deepprop: strict JSON (RFC 8259), non-finite numbers as null with a reason.

Python's ``json`` writes ``NaN`` and ``Infinity``, which strict parsers reject; deepprop's results contain
both (xi_c is infinite on the critical line, undefined where the signal is unbounded). :func:`strict`
turns any result (dicts, lists, tuples, numpy scalars and arrays, dataclasses, objects with ``to_dict()``,
paths) into plain JSON values and replaces every non-finite number by ``None``. Where that number is the
value of a key ``k`` of a dict, the same dict gets ``k_reason`` (unless it has one already) saying why:

* ``"critical"``: a depth scale (a key ``xi_...`` or ``max_depth``) that is +inf: under the engine's one
  critical rule (:func:`deepprop.theory.depth_scales.critical_rule`) that is the only way a depth scale is
  infinite, wherever the result comes from (``point``, ``advise``, ``simulate ...``),
* ``"infinite"`` / ``"negative_infinite"``: any other +inf / -inf,
* ``"undefined"``: NaN (the quantity has no value there; the result's notes say why),
* ``"non_finite_elements"``: a list value with at least one such entry (each entry is ``null``).

``reasons`` overrides the reason of top-level keys (``{"xi_c": "critical"}``). A consumer can therefore
parse with ``json.loads(text, parse_constant=...)`` rejecting NaN/Infinity and still tell "infinite"
from "no value".

One rule for every result: a number never stands beside a reason saying it has no valid value. Where a
dict holds ``k_reason`` (a non-empty string) and a number under ``k`` (a fit flagged invalid, a finite
stand-in for a divergent quantity), ``k`` is written as null. :func:`with_schema` makes every key of a
result's schema present, null with a reason where the result has no value for it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np

REASON_SUFFIX = "_reason"


def _is_depth_scale(key: str) -> bool:
    return (key.startswith("xi_") or key == "max_depth") and not key.endswith(("_err", "_reason"))


def _reason_of(value: float) -> str:
    if math.isnan(value):
        return "undefined"
    return "infinite" if value > 0 else "negative_infinite"


def _plain(value: Any) -> Any:
    """One level of conversion to a JSON-able Python value (containers are handled by the caller)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return to_dict() if callable(to_dict) else dataclasses.asdict(value)
    if hasattr(value, "to_dict") and callable(value.to_dict) and not isinstance(value, Mapping):
        return value.to_dict()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return value


def _clean(value: Any) -> tuple[Any, str | None]:
    """(JSON-safe value, reason or None): the reason is set when ``value`` is or contains a non-finite number."""
    value = _plain(value)
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value, None
    if isinstance(value, float):
        return (value, None) if math.isfinite(value) else (None, _reason_of(value))
    if isinstance(value, Mapping):
        return _clean_dict(value), None
    if isinstance(value, list | tuple):
        items = [_clean(v) for v in value]
        bad = any(r is not None for _, r in items)
        return [v for v, _ in items], ("non_finite_elements" if bad else None)
    raise TypeError(f"cannot write {type(value).__name__} as JSON")


def _clean_dict(d: Mapping[str, Any], reasons: Mapping[str, str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    found: dict[str, str] = {}
    for key, value in d.items():
        k = str(key)
        out[k], reason = _clean(value)
        if reason is not None:
            found[k] = "critical" if reason == "infinite" and _is_depth_scale(k) else reason
    for k, reason in found.items():
        out.setdefault(k + REASON_SUFFIX, reason)
    for k, reason in (reasons or {}).items():
        if k in out:
            out[k + REASON_SUFFIX] = reason
    for k in list(out):  # a reason means "no valid value": never a number beside it
        reason = out.get(k + REASON_SUFFIX)
        value = out[k]
        if isinstance(reason, str) and reason and isinstance(value, int | float) and not isinstance(value, bool):
            out[k] = None
    return out


def with_schema(obj: Any, keys: tuple[str, ...] | list[str], reason: str) -> dict[str, Any]:
    """``obj`` (a dict-like result) with every key of ``keys`` present: a missing key is None with
    ``<key>_reason`` = ``reason`` (a key already present keeps its value and reason)."""
    plain = dict(_plain(obj))
    for k in keys:
        if k not in plain:
            plain[k] = None
            plain.setdefault(k + REASON_SUFFIX, reason)
    return plain


def strict(obj: Any, reasons: Mapping[str, str] | None = None) -> Any:
    """``obj`` as plain JSON values: non-finite numbers -> None, with ``<key>_reason`` beside them.

    ``reasons`` (for a dict ``obj``) sets the reason of named top-level keys, e.g. ``{"xi_c": "critical"}``;
    a number given a reason this way is written as null (see the module docstring).
    """
    if reasons is not None:
        plain = _plain(obj)
        if not isinstance(plain, Mapping):
            raise TypeError("reasons= needs a dict-like result")
        return _clean_dict(plain, reasons)
    return _clean(obj)[0]


def to_json(obj: Any, *, indent: int | None = 2, reasons: Mapping[str, str] | None = None) -> str:
    """Strict JSON text of ``obj`` (see :func:`strict`); never contains NaN or Infinity."""
    return json.dumps(strict(obj, reasons), indent=indent, allow_nan=False)


def loads_strict(text: str) -> Any:
    """``json.loads`` that rejects NaN / Infinity / -Infinity (the check consumers and tests use)."""

    def _reject(name: str) -> Any:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=_reject)
