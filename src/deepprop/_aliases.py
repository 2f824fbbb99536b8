"""Deprecated module paths, kept importable so that code written against 0.1 keeps working.

``import deepprop.meanfield`` returns the very module object of ``deepprop.theory.meanfield`` (so a
monkeypatch through either name patches both) and warns once with DeprecationWarning. Nothing in the
package itself imports an old path; a test checks that.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED: dict[str, str] = {
    **{f"deepprop.{m}": f"deepprop.theory.{m}"
       for m in ("gauss", "kernels", "maps", "fixed_points", "depth_scales", "meanfield", "grid")},
    "deepprop.noise": "deepprop.prior",
    "deepprop.torch": "deepprop.integrations.pytorch",
    "deepprop.model_structure": "deepprop.integrations.model_structure",
    "deepprop.simulate.networks": "deepprop.networks.ensemble",
    "deepprop.figures": "deepprop.plots",
    "deepprop.figures.engine": "deepprop.plots.theory",
    "deepprop.figures.advice": "deepprop.plots.critical_init",
    "deepprop.figures.simulation": "deepprop.plots.simulation",
    "deepprop.figures.style": "deepprop.plots.style",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str):
        self.target = target

    def create_module(self, spec):  # noqa: ANN001
        warnings.warn(f"{spec.name} moved to {self.target}; the old name will be removed in 0.3",
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(self.target)

    def exec_module(self, module) -> None:  # noqa: ANN001
        pass  # the target module is already executed


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(MOVED[fullname]))


def install() -> None:
    if not any(isinstance(f, _AliasFinder) for f in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
