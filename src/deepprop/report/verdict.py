"""Verdicts: a measured number against the paper's number and a stated tolerance, computed, never typed.

A claim states, for each named quantity it checks, a target (the paper's number, or the theory value the
paper says the measurement matches) and a :class:`Tolerance` with the reason for its size. Kinds:

* ``abs``: |ours - target| <= value;
* ``rel``: |ours - target| <= value * |target|;
* ``at_least``: ours >= target - value (a lower bound read from the paper's sentence);
* ``at_most``: ours <= target + value (an upper bound);
* ``sigma``: |ours - target| <= value * err, with err the measurement's own standard error, reported
  beside it as ``<name>_err`` (sampling noise of a finite ensemble).

:func:`verdict` is pure: the same numbers always give the same verdict, and a number moved outside its
tolerance gives ``differs``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepprop.errors import ParameterError

REPRODUCED = "reproduced"
DIFFERS = "differs"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, DIFFERS, NOT_RUN)
KINDS = ("abs", "rel", "at_least", "at_most", "sigma")


@dataclass(frozen=True)
class Tolerance:
    """How far a measured number may sit from its target, and where that allowance comes from."""

    kind: str
    value: float
    source: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParameterError("kind", f"must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if not (math.isfinite(self.value) and self.value >= 0):
            raise ParameterError("value", f"a tolerance must be finite and >= 0 (got {self.value!r})")

    def allows(self, ours: float, target: float, err: float | None = None) -> bool:
        """True when ``ours`` lies within this tolerance of ``target``."""
        if self.kind == "abs":
            return abs(ours - target) <= self.value
        if self.kind == "rel":
            return abs(ours - target) <= self.value * abs(target)
        if self.kind == "at_least":
            return ours >= target - self.value
        if self.kind == "at_most":
            return ours <= target + self.value
        if err is None or not math.isfinite(err):
            return False
        return abs(ours - target) <= self.value * err

    def describe(self) -> str:
        """Short text: '+-0.005', '+-10%', '>= target - 0', 'within 3 standard errors'."""
        v = f"{self.value:.3g}"
        return {
            "abs": f"±{v}",
            "rel": f"±{100 * self.value:.3g}%",
            "at_least": f"≥ target − {v}" if self.value else "≥ target",
            "at_most": f"≤ target + {v}" if self.value else "≤ target",
            "sigma": f"within {v} standard errors",
        }[self.kind]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "value": self.value, "text": self.describe(), "source": self.source}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    why: str


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def verdict(ours: Mapping[str, Any], paper: Mapping[str, Any], tolerance: Mapping[str, Tolerance]) -> Verdict:
    """``reproduced`` when every checked quantity lies within its tolerance of its target, else ``differs``.

    ``tolerance`` names the checked quantities; ``paper`` holds their targets and ``ours`` the measured
    values (plus ``<name>_err`` for ``sigma`` tolerances). A missing or non-finite measurement differs.
    """
    if not tolerance:
        raise ParameterError("tolerance", "a claim must check at least one quantity")
    failed, passed = [], []
    for name, tol in tolerance.items():
        target = _number(paper.get(name))
        if target is None:
            raise ParameterError("paper", f"no finite target for the checked quantity {name!r}")
        got = _number(ours.get(name))
        if got is None:
            failed.append(f"{name}: no finite value measured")
            continue
        err = _number(ours.get(f"{name}_err"))
        text = f"{name} = {_fmt(got)} vs {_fmt(target)} ({tol.describe()})"
        (passed if tol.allows(got, target, err) else failed).append(text)
    if failed:
        return Verdict(DIFFERS, "outside tolerance: " + "; ".join(failed))
    return Verdict(REPRODUCED, "within tolerance: " + "; ".join(passed))
