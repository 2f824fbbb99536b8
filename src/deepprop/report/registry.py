"""The claims registry: each claim is a small function ``(ctx) -> Measurement`` registered with its id.

A registration states everything that is fixed before anything is measured: the paper and place, the
claim in one sentence, what the paper shows (``paper_says``), the paper's numbers or the bounds read from
its sentences (``paper``), a :class:`~deepprop.report.verdict.Tolerance` per checked quantity, the sizes
of the experiment at each tier, and its ``kind``:

* ``paper``: the quantity the authors measured, with their criterion (protocols.md);
* ``own``: a test deepprop adds (a quantity or comparison the authors did not measure);
* ``engine``: a check that can only fail through a bug in deepprop (closed forms, quadrature).

``decides`` names the size (tier) that decides the row when a smaller one leaves it undecided. The
function only measures; a pure summary function turns its raw numbers into the checked ones, so that the
test suite can feed it what wrong physics would give and see the verdict turn to "differs".

Adding a claim::

    @claim("001-figX", source="Schoenholz et al. 2017, fig. X", statement="...", paper_says="...",
           paper={"xi": 3.0}, tolerance={"xi": Tolerance("rel", 0.1, "read off fig. X")},
           sizes={"smoke": {"width": 16}, "quick": {"width": 200}, "paper": {"width": 1000}})
    def fig_x(ctx: Context) -> Measurement:
        ...
        return Measurement(ours={"xi": measured}, figure=[...], data=[...])
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deepprop.errors import ParameterError
from deepprop.report.verdict import Tolerance

if TYPE_CHECKING:
    from deepprop.report.context import Context

TIERS = ("smoke", "quick", "full", "paper")
CLAIM_KINDS = ("paper", "own", "engine")
CLAIM_MODULES = ("claims_001", "claims_001_train", "claims_004", "claims_002", "claims_003", "claims_own",
                 "claims_real_models")


@dataclass
class Measurement:
    """What a claim measured.

    ours      : measured numbers by name (plus ``<name>_err`` standard errors where a tolerance uses them)
    reference : targets computed inside the claim where the paper's statement is "measured = theory"
                (e.g. the engine's xi_c at each point); merged over the registered ``paper`` numbers
    figure    : figure paths relative to OUT; data: raw-number files relative to OUT
    note      : what stands in for the paper's setting (dataset, sizes), shown in the row
    not_run   : reason the claim could not run (then no verdict is computed)
    undecided : reason this size cannot decide the claim although nothing failed (e.g. the grid holds no
                cell where two laws disagree)
    """

    ours: dict[str, Any] = field(default_factory=dict)
    reference: dict[str, float] = field(default_factory=dict)
    figure: list[str] = field(default_factory=list)
    data: list[str] = field(default_factory=list)
    note: str = ""
    not_run: str | None = None
    undecided: str | None = None


@dataclass(frozen=True)
class Claim:
    id: str
    source: str
    statement: str
    paper_says: str
    paper: Mapping[str, float]
    tolerance: Mapping[str, Tolerance]
    sizes: Mapping[str, Mapping[str, Any]]
    run: Callable[[Context], Measurement]
    kind: str = "paper"
    decides: str = ""

    @property
    def group(self) -> str:
        """The id before any '/suffix' (a sub-row's parent)."""
        return self.id.split("/")[0]


REGISTRY: dict[str, Claim] = {}


def claim(
    id: str,
    *,
    source: str,
    statement: str,
    paper_says: str,
    tolerance: Mapping[str, Tolerance],
    sizes: Mapping[str, Mapping[str, Any]],
    paper: Mapping[str, float] | None = None,
    kind: str = "paper",
    decides: str = "",
) -> Callable[[Callable[[Context], Measurement]], Callable[[Context], Measurement]]:
    """Register the decorated function as claim ``id`` (see the module docstring)."""

    def wrap(fn: Callable[[Context], Measurement]) -> Callable[[Context], Measurement]:
        register(Claim(id, source, statement, paper_says, dict(paper or {}), dict(tolerance), sizes, fn, kind,
                       decides))
        return fn

    return wrap


def register(c: Claim) -> Claim:
    """Add a claim (ids are unique; every tier has sizes; the full tier runs the quick sizes unless the
    claim names its own)."""
    if c.id in REGISTRY:
        raise ValueError(f"claim {c.id!r} registered twice")
    if c.kind not in CLAIM_KINDS:
        raise ValueError(f"claim {c.id!r}: kind must be one of {', '.join(CLAIM_KINDS)} (got {c.kind!r})")
    if "full" not in c.sizes and "quick" in c.sizes:
        c = dataclasses.replace(c, sizes={**c.sizes, "full": c.sizes["quick"]})
    missing = [t for t in TIERS if t not in c.sizes]
    if missing:
        raise ValueError(f"claim {c.id!r} has no sizes for tier(s) {', '.join(missing)}")
    REGISTRY[c.id] = c
    return c


def all_claims() -> list[Claim]:
    """Every registered claim, in report order (001, 004, 002, 003, own; registration order within)."""
    for name in CLAIM_MODULES:
        importlib.import_module(f"deepprop.report.{name}")
    return list(REGISTRY.values())


def select(only: str | list[str] | None = None) -> list[Claim]:
    """Claims named by ``only`` (ids or parent ids, comma separated); all when None.

    A parent id ("001-fig5") selects its sub-rows ("001-fig5/sgd-200", ...). Unknown ids raise a
    ParameterError naming --only.
    """
    claims = all_claims()
    if only is None:
        return claims
    wanted = [w.strip() for w in (only.split(",") if isinstance(only, str) else only) if w.strip()]
    if not wanted:
        raise ParameterError("only", "names no claim")
    unknown = [w for w in wanted if not any(c.id == w or c.group == w for c in claims)]
    if unknown:
        groups = sorted({c.group for c in claims})
        raise ParameterError("only", f"unknown claim id {unknown[0]!r}; known: {', '.join(groups)}")
    return [c for c in claims if c.id in wanted or c.group in wanted]


def check_tier(tier: str) -> str:
    if tier not in TIERS:
        raise ParameterError("tier", f"must be one of {', '.join(TIERS)} (got {tier!r})")
    return tier
