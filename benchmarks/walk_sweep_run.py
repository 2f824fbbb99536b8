"""Walk of ``sweep run``'s arguments: the deepprop modules ("rooms") its handler passes through before the
first network trains, and how often the walk climbs back into a room it had already left.

    python benchmarks/walk_sweep_run.py [--json]

The command runs twice on a tiny synthetic sweep (the first run imports everything, so that module
loading is not counted); the second is traced with ``sys.settrace`` from ``cli.sweep._run`` until
``sweep.ensemble.train_ensemble`` is entered. Every call into a deepprop function is a step of the walk:

* rooms: distinct modules entered;
* stays: runs of consecutive calls in one module (a new stay starts when a call enters another module);
* climbs: calls back up into a module that is already on the call stack above the caller's module (a room
  that called down calls, through another room, back into itself);
* re-entries: stays in a module the walk had already left (the coarser count: a room visited twice).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ARGV = ["sweep", "run", "--dataset", "synthetic", "--n-train", "32", "--n-test", "16", "--width", "4",
        "--depths", "2", "--sigma-w2", "1,2", "--keep-rate", "0.9", "--steps", "2", "--batch-size", "8",
        "--quiet"]
START = ("deepprop.cli.sweep", "_run")
STOP = ("deepprop.sweep.ensemble", "train_ensemble")


SCALARS = (int, bool, type(None))
"""Values not followed by identity (small ints are shared objects in CPython; the command line's strings are
objects of their own)."""


class Taint:
    """The values derived from the command's arguments: the parsed namespace, what it holds, and what every
    call that received one of them returned (followed one level into containers and objects)."""

    def __init__(self) -> None:
        self.ids: set[int] = set()
        self.keep: list[object] = []  # held, so that an id is never reused by another object

    def add(self, value: object) -> None:
        for item in (value, *_contents(value)):
            if not isinstance(item, SCALARS) and id(item) not in self.ids:
                self.ids.add(id(item))
                self.keep.append(item)

    def holds(self, value: object) -> bool:
        return any(id(item) in self.ids for item in (value, *_contents(value)) if not isinstance(item, SCALARS))


def _contents(value: object) -> list[object]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return list(value)
    fields = getattr(value, "__dict__", None)
    if isinstance(fields, dict) and not isinstance(value, type):
        return list(fields.values())
    return []


def walk(store: str) -> list[str]:
    """The module of each deepprop call that receives a value derived from the arguments (a step of their
    walk), from the handler until training starts, in call order."""
    from deepprop.cli.main import main

    steps: list[str] = []
    climbs: list[bool] = []
    taint = Taint()
    state = {"on": False, "done": False}

    def returned(frame, event, arg):  # noqa: ANN001
        if event == "return":
            taint.add(arg)
        return returned

    def tracer(frame, event, arg):  # noqa: ANN001
        if event != "call" or state["done"]:
            return None
        module = frame.f_globals.get("__name__", "")
        where = (module, frame.f_code.co_name)
        if where == START:
            state["on"] = True
            taint.add(frame.f_locals["args"])
        if where == STOP:
            state["done"] = True
            sys.settrace(None)
            return None
        if not (state["on"] and module.startswith("deepprop")) or frame.f_code.co_name == "<module>":
            return None
        if not any(taint.holds(v) for v in frame.f_locals.values()):
            return None
        steps.append(module)
        climbs.append(_climbs_back(frame, module))
        return returned

    sys.settrace(tracer)
    try:
        code = main([*ARGV, "--store", store])
    finally:
        sys.settrace(None)
    if code != 0:
        raise SystemExit(f"sweep run failed with exit code {code}")
    return list(zip(steps, climbs, strict=True))


def _climbs_back(frame, module: str) -> bool:  # noqa: ANN001
    """True when this call enters ``module`` from another module while ``module`` is already on the call
    stack above its caller: a room that called down is called back up into (a dependency circle)."""
    caller = frame.f_back
    caller_module = caller.f_globals.get("__name__", "") if caller is not None else ""
    if caller_module == module:
        return False
    f = caller.f_back if caller is not None else None
    while f is not None:
        if f.f_globals.get("__name__", "") == module:
            return True
        f = f.f_back
    return False


def measure(steps: list[tuple[str, bool]]) -> dict:
    """rooms, stays, climbs (calls back up into a room on the stack, with the rooms they climb into) and
    re-entries (a stay in a room the walk had already left, whatever the stack: the coarser count)."""
    stays: list[str] = []
    for module, _ in steps:
        if not stays or stays[-1] != module:
            stays.append(module)
    entered = {m: stays.count(m) for m in dict.fromkeys(stays)}
    climbs = [m for m, up in steps if up]
    reentries = [m for i, m in enumerate(stays) if m in stays[:i]]
    return {"rooms": len(entered), "stays": len(stays), "climbs": len(climbs),
            "climbs_into": {m: climbs.count(m) for m in dict.fromkeys(climbs)}, "reentries": len(reentries),
            "steps": len(steps), "entered": entered, "walk": stays}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        from deepprop.cli.main import main as cli

        assert cli([*ARGV, "--store", str(Path(tmp) / "warm.db")]) == 0  # imports everything once
        result = measure(walk(str(Path(tmp) / "walk.db")))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"rooms {result['rooms']}, stays {result['stays']}, climbs {result['climbs']} "
          f"{result['climbs_into']}, re-entries {result['reentries']} ({result['steps']} calls)")
    for module, times in result["entered"].items():
        print(f"  {module}: entered {times}x")
    print("walk: " + " > ".join(m.removeprefix("deepprop.") for m in result["walk"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
