"""Verdicts: measured numbers against stated thresholds, computed, never typed, with their margins.

A claim states, for each named quantity it checks, a target (the paper's number, or the theory value the
paper says the measurement matches) and a :class:`Tolerance` with the reason for its size. The threshold
follows from the kind:

* ``abs``: |ours - target| <= value;
* ``rel``: |ours - target| <= value * |target|;
* ``at_least``: ours >= target - value (a lower bound read from the paper's sentence);
* ``at_most``: ours <= target + value (an upper bound);
* ``sigma``: |ours - target| <= value * err (a significance test in the measurement's own errors).

**Margin.** The signed distance of the measured number from its threshold (positive on the allowed side),
in units of the measurement's own standard error, ``<name>_err`` in ``ours`` (seeds, bootstrap, jackknife:
whatever the claim's sample is). A quantity without one is deterministic (a theory computation) and its
margin is ``None`` with the reason.

**Decision.** A quantity with a margin passes when its margin is at least :data:`K_PASS` (2 standard errors)
and fails when it is at most ``-k_fail``; in between it is *undecided at this size*. When the number is the
worst of m comparisons (``Tolerance.comparisons`` or ``<name>_comparisons`` in ``ours``), ``k_fail`` is the
Bonferroni quantile 1 - ALPHA/m of the normal (or Student t, given ``<name>_dof``) distribution, so that m
noisy comparisons do not fail by chance; passing needs every comparison to pass at K_PASS (an
intersection-union test needs no correction). A deterministic quantity passes iff it is on the allowed
side. A quantity measured as None with a reason in ``<name>_undecided`` (this size holds nothing to measure
it on) is undecided; without one it fails. A check that only makes the experiment informative (``fail_means
= "undecided"``, e.g. the trained region must reach toward a bound before the bound can be tested) leaves the
row undecided when it fails.

A summary names where its deciding number was measured (the worst cell, point or setting) in
``<name>_at``; the verdict's reason quotes it.

**Row.** ``differs`` when a quantity fails, else ``undecided`` when one is undecided (or the claim declares
its grid cannot decide), else ``reproduced``. The row's margin is that of its deciding quantity: the failing
one furthest out, the undecided one, or the passing one closest to its threshold.

:func:`verdict` is pure: the same numbers always give the same verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from deepprop.errors import ParameterError
from deepprop.results import format_number

REPRODUCED = "reproduced"
DIFFERS = "differs"
UNDECIDED = "undecided"
NOT_RUN = "not run"
VERDICTS = (REPRODUCED, DIFFERS, UNDECIDED, NOT_RUN)
KINDS = ("abs", "rel", "at_least", "at_most", "sigma")

K_PASS = 2.0
"""A quantity passes when it sits at least this many standard errors inside its threshold."""
ALPHA = 0.0455
"""Two-sided false-alarm rate of one comparison at 2 standard errors; shared out over m comparisons."""

DETERMINISTIC = "deterministic: computed without sampling (no standard error)"


@dataclass(frozen=True)
class Tolerance:
    """How far a measured number may sit from its target, where that allowance comes from, and of how many
    comparisons the number is the worst (its multiplicity)."""

    kind: str
    value: float
    source: str
    comparisons: int = 1
    fail_means: str = DIFFERS  # "undecided": failing this check means the experiment cannot decide (not vacuous)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ParameterError("kind", f"must be one of {', '.join(KINDS)} (got {self.kind!r})")
        if not (math.isfinite(self.value) and self.value >= 0):
            raise ParameterError("value", f"a tolerance must be finite and >= 0 (got {self.value!r})")
        if self.comparisons < 1:
            raise ParameterError("comparisons", f"must be >= 1 (got {self.comparisons!r})")
        if self.fail_means not in (DIFFERS, UNDECIDED):
            raise ParameterError("fail_means", f"must be {DIFFERS!r} or {UNDECIDED!r} (got {self.fail_means!r})")

    def distance(self, ours: float, target: float, err: float | None = None) -> float:
        """Signed distance of ``ours`` from the threshold, positive on the allowed side (``sigma``: in errors)."""
        if self.kind == "abs":
            return self.value - abs(ours - target)
        if self.kind == "rel":
            return self.value * abs(target) - abs(ours - target)
        if self.kind == "at_least":
            return ours - (target - self.value)
        if self.kind == "at_most":
            return target + self.value - ours
        if err is None or not math.isfinite(err) or err <= 0:
            return -math.inf
        return self.value - abs(ours - target) / err

    def allows(self, ours: float, target: float, err: float | None = None) -> bool:
        """True when ``ours`` lies within this tolerance of ``target`` (the threshold itself, no margin)."""
        return self.distance(ours, target, err) >= 0

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
        return {"kind": self.kind, "value": self.value, "text": self.describe(), "source": self.source,
                "comparisons": self.comparisons, "fail_means": self.fail_means}


def k_fail(comparisons: int = 1, dof: float | None = None) -> float:
    """Standard errors beyond the threshold at which the worst of ``comparisons`` numbers fails: the
    Bonferroni quantile 1 - ALPHA / (2 m) of the normal distribution (Student t with ``dof``)."""
    from scipy import stats

    q = 1.0 - ALPHA / (2.0 * max(int(comparisons), 1))
    if dof is not None and math.isfinite(dof) and dof >= 1:
        return float(stats.t.ppf(q, dof))
    return float(stats.norm.ppf(q))


@dataclass(frozen=True)
class Check:
    """One checked quantity: its value, target, distance to the threshold, margin and decision."""

    name: str
    value: float | None
    target: float
    err: float | None
    distance: float
    margin: float | None
    k_fail: float
    decision: str  # pass | fail | undecided
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "target": self.target, "err": self.err,
                "distance": self.distance, "margin": self.margin, "k_fail": self.k_fail,
                "decision": self.decision}


@dataclass(frozen=True)
class Verdict:
    verdict: str
    why: str
    margin: float | None = None
    margin_reason: str | None = None
    deciding: dict[str, Any] | None = None
    checks: list[Check] = field(default_factory=list)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _fmt(x: float | None) -> str:
    return "–" if x is None else format_number(x, 4)


def check(name: str, tol: Tolerance, ours: Mapping[str, Any], target: float) -> Check:
    """Decide one quantity (see the module docstring); a failure of a not-vacuous check (``fail_means``
    undecided) leaves the row undecided instead."""
    c = _check(name, tol, ours, target)
    at = ours.get(f"{name}_at")
    if isinstance(at, str) and at:  # where the deciding number was measured (the worst cell, point, setting)
        c = replace(c, text=f"{c.text} [at {at}]")
    if c.decision == "fail" and tol.fail_means == UNDECIDED and c.value is not None:
        return Check(c.name, c.value, c.target, c.err, c.distance, c.margin, c.k_fail, "undecided",
                     c.text + " (this size has not shown what the test needs: it cannot decide)")
    return c


def _check(name: str, tol: Tolerance, ours: Mapping[str, Any], target: float) -> Check:
    got = _number(ours.get(name))
    err = _number(ours.get(f"{name}_err"))
    if err is not None and err <= 1e-12 * max(1.0, abs(got or 0.0)):  # no spread (a resampling that never moves)
        err = None
    m = int(_number(ours.get(f"{name}_comparisons")) or tol.comparisons)
    kf = k_fail(m, _number(ours.get(f"{name}_dof")))
    if got is None:
        why = ours.get(f"{name}_undecided")
        if why:  # the claim says this size cannot measure the quantity (e.g. no grid cell beyond a bound)
            return Check(name, None, target, None, 0.0, None, kf, "undecided", f"{name}: not measurable: {why}")
        return Check(name, None, target, err, -math.inf, None, kf, "fail", f"{name}: no finite value measured")
    if tol.kind == "sigma":
        d = tol.distance(got, target, err)
        margin = d if err is not None else None
        decision = "pass" if d >= 0 else "fail"
        text = f"{name} = {_fmt(got)} ± {_fmt(err)} vs {_fmt(target)} ({tol.describe()})"
        return Check(name, got, target, err, d, margin, kf, decision, text)
    d = tol.distance(got, target)
    plus = f" ± {_fmt(err)}" if err is not None else ""
    text = f"{name} = {_fmt(got)}{plus} vs {_fmt(target)} ({tol.describe()})"
    if err is None:
        return Check(name, got, target, None, d, None, kf, "pass" if d >= 0 else "fail", text)
    margin = d / err
    decision = "pass" if margin >= K_PASS else "fail" if margin <= -kf else "undecided"
    text += f", margin {margin:+.2f} SE" + (f" (worst of {m}: fails beyond {kf:.2f})" if m > 1 else "")
    return Check(name, got, target, err, d, margin, kf, decision, text)


def scale_to_decide(margin: float, k: float = K_PASS) -> float:
    """How many times larger a sample must be for a margin that keeps its distance to reach +-k standard
    errors (errors shrink as 1/sqrt(n)): (k / |margin|)^2; inf at margin 0."""
    return math.inf if margin == 0 else (k / abs(margin)) ** 2


def verdict(ours: Mapping[str, Any], paper: Mapping[str, Any], tolerance: Mapping[str, Tolerance],
            undecided: str | None = None) -> Verdict:
    """The row's verdict, why, margin and deciding quantity (module docstring).

    ``tolerance`` names the checked quantities; ``paper`` holds their targets and ``ours`` the measured
    values (with ``<name>_err``, ``<name>_comparisons``, ``<name>_dof`` where they apply). ``undecided`` is
    the claim's own reason that this size cannot decide it (used when nothing fails).
    """
    if not tolerance:
        raise ParameterError("tolerance", "a claim must check at least one quantity")
    checks = []
    for name, tol in tolerance.items():
        target = _number(paper.get(name))
        if target is None:
            raise ParameterError("paper", f"no finite target for the checked quantity {name!r}")
        checks.append(check(name, tol, ours, target))
    failed = [c for c in checks if c.decision == "fail"]
    open_ = [c for c in checks if c.decision == "undecided"]

    def key(c: Check) -> float:
        return c.margin if c.margin is not None else (math.copysign(math.inf, c.distance) if c.distance else 0.0)

    if failed:
        deciding = min(failed, key=key)
        v = DIFFERS
        why = "outside tolerance: " + "; ".join(c.text for c in failed)
    elif open_ or undecided:
        v = UNDECIDED
        if open_:
            sized = [c for c in open_ if c.margin is not None]
            deciding = min(sized, key=lambda c: abs(c.margin or 0.0)) if sized else open_[0]
            why = "undecided at this size: " + "; ".join(c.text for c in open_)
            if deciding.margin is not None:
                m = deciding.margin
                scale = scale_to_decide(m, K_PASS if m >= 0 else deciding.k_fail)
                why += f"; a sample ~{scale:.3g}x larger decides it if the distance stays"
        else:
            deciding = min(checks, key=key)
            why = "undecided at this size: " + str(undecided)
        if undecided and open_:
            why += "; " + str(undecided)
    else:
        deciding = min(checks, key=key)
        v = REPRODUCED
        why = "within tolerance: " + "; ".join(c.text for c in checks)
    reason = None
    if deciding.margin is None:
        reason = DETERMINISTIC if deciding.value is not None else deciding.text
    return Verdict(v, why, deciding.margin, reason, deciding.to_dict(), checks)


def worst(tol: Tolerance, values: list[float], errs: list[float | None], targets: list[float] | float) -> int | None:
    """Index of the comparison closest to failing (smallest margin; a comparison without an error by its
    distance) among ``values`` against ``targets`` under ``tol``; None when there is none.

    A claim that checks several points reports the worst one as its deciding number (with its own error and
    the number of comparisons), so that the verdict's Bonferroni rule applies."""
    tg = targets if isinstance(targets, list) else [targets] * len(values)
    best_i, best_key = None, math.inf
    for i, (v, e, t) in enumerate(zip(values, errs, tg, strict=True)):
        vv, ee, tt = _number(v), _number(e), _number(t)
        if tt is None:
            continue
        if vv is None:
            return i
        d = tol.distance(vv, tt)
        key = d / ee if ee is not None and ee > 0 else (math.copysign(math.inf, d) if d else 0.0)
        if key < best_key or best_i is None:
            best_i, best_key = i, key
    return best_i


def deciding_worst(name: str, tol: Tolerance, values: list[float], errs: list[float | None], where: list[str],
                   targets: list[float] | float = 0.0, none_reason: str = "nothing to compare") -> dict[str, Any]:
    """The checked quantity ``name`` as the worst of several comparisons (:func:`worst`): its value, standard
    error, number of comparisons and where it was measured (``<name>``, ``<name>_err``, ``<name>_comparisons``,
    ``<name>_at``); ``<name>`` None with ``<name>_undecided`` = ``none_reason`` when there is none."""
    i = worst(tol, values, errs, targets)
    if i is None:
        return {name: None, f"{name}_undecided": none_reason}
    return {name: None if values[i] is None else float(values[i]),
            f"{name}_err": None if errs[i] is None else float(errs[i]),
            f"{name}_comparisons": len(values), f"{name}_at": where[i]}
