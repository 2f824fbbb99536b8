"""The house rules, checked on the source: data walks one way (no room imports a room above it), no import
circle between modules, matplotlib only in plots/, and no module uses a deprecated path."""

import ast
import importlib
import warnings
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "deepprop"

# Rooms from the bottom up; a module may import its own room and the rooms below it.
ROOMS = [
    ("errors", "_aliases", "_version"),
    ("validation", "activations", "atomic", "jsonout"),  # tools every room may use
    ("checkpoint", "results", "noise_models"),  # resume, serialize / format / progress, the kinds of noise
    ("prior",),
    ("theory",),
    ("networks", "data", "advice", "grid_export"),
    ("simulate", "sweep"),
    ("integrations",),
    ("plots",),
    ("report",),
    ("cli",),
    ("__main__",),
]
RANK = {room: i for i, rooms in enumerate(ROOMS) for room in rooms}


def _modules() -> dict[str, Path]:
    out = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        name = ".".join(("deepprop",) + tuple(p for p in parts if p != "__init__"))
        out[name] = path
    return out


def _imports(path: Path, name: str) -> set[str]:
    """Every deepprop module imported anywhere in the file (module level or inside functions)."""
    tree = ast.parse(path.read_text())
    found = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            subs = {f"{base}.{a.name}" for a in node.names}
            real = subs & MODULE_NAMES  # `from pkg import submodule` depends on the submodule only
            found |= real if real == subs else {base} | real
    return {m for m in found if m == "deepprop" or m.startswith("deepprop.")}


MODULES = _modules()
MODULE_NAMES = set(MODULES)
GRAPH = {name: {m for m in _imports(path, name) if m in MODULES} for name, path in MODULES.items()}


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_belongs_to_a_room():
    assert {_room(m) for m in MODULES} - {"__init__"} <= set(RANK)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) != "__init__"))
def test_no_room_imports_a_room_above_it(module):
    above = {m for m in GRAPH[module] if m != "deepprop" and RANK[_room(m)] > RANK[_room(module)]}
    assert not above, f"{module} imports {sorted(above)} from a room above it"


def test_rooms_of_one_level_do_not_import_each_other():
    for module, deps in GRAPH.items():
        room = _room(module)
        if room == "__init__":
            continue
        for dep in deps:
            other = _room(dep)
            if other not in ("__init__", room) and RANK[other] == RANK[room]:
                raise AssertionError(f"{module} imports {dep}: rooms of one level stay independent")


def test_no_import_circle():
    seen: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(m: str, stack: list[str]) -> None:
        seen[m] = 1
        for d in GRAPH[m]:
            if d == "deepprop" or d == m:
                continue
            if seen.get(d) == 1:
                raise AssertionError("import circle: " + " -> ".join(stack[stack.index(d):] + [d]))
            if d not in seen:
                visit(d, stack + [d])
        seen[m] = 2

    for m in GRAPH:
        if m not in seen:
            visit(m, [m])


def test_nothing_imports_the_top_level_package_from_inside():
    # deepprop/__init__ imports the rooms; a room importing `deepprop` would make a circle through it.
    offenders = [m for m, deps in GRAPH.items() if "deepprop" in deps and m != "deepprop"]
    assert not offenders


def test_matplotlib_only_in_plots():
    for name, path in MODULES.items():
        if _room(name) == "plots":
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(m.split(".")[0] == "matplotlib" for m in mods), f"{name} imports matplotlib"


def test_no_module_uses_a_deprecated_path():
    from deepprop._aliases import MOVED

    for name, deps in GRAPH.items():
        assert not (deps & set(MOVED)), f"{name} imports a deprecated path"
    text_imports = {m for name, path in MODULES.items() for m in _imports(path, name)}
    assert not (text_imports & set(MOVED))


def test_old_paths_still_import_with_a_warning():
    import deepprop

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module("deepprop.meanfield")
    assert old is importlib.import_module("deepprop.theory.meanfield")
    assert deepprop.mean_field is old.mean_field
    assert any(issubclass(w.category, DeprecationWarning) for w in caught) or "deepprop.meanfield" in str(caught)


def test_public_api_at_top_level():
    import deepprop

    for name in ("mean_field", "trajectory", "phase_diagram", "critical_sigma_w2", "critical_init", "NetworkPrior",
                 "get_activation", "DeeppropError", "ParameterError", "DatasetError", "StoreError"):
        assert hasattr(deepprop, name), name
    assert issubclass(deepprop.ParameterError, deepprop.DeeppropError)
    assert issubclass(deepprop.ParameterError, ValueError)


def _source_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_the_theory_draws_no_progress_bar():
    # progress reaches the library through a callback: no tqdm under theory/ (the CLI draws the bars)
    offenders = [n for n, p in MODULES.items() if _room(n) == "theory" and "tqdm" in _source_imports(p)]
    assert not offenders


def test_matplotlib_backend_chosen_only_by_the_cli():
    for name, path in MODULES.items():
        if _room(name) != "cli":
            assert "matplotlib.use(" not in path.read_text() and '.use("Agg")' not in path.read_text(), name


def test_haar_orthogonal_matrices_drawn_in_one_place():
    # QR with the signs of diag(R) folded in: networks/weights.py only
    users = sorted(n for n, p in MODULES.items() if "linalg.qr" in p.read_text())
    assert users == ["deepprop.networks.weights"]


def test_top_level_is_flat_and_complete():
    import deepprop

    for name in deepprop.__all__:
        assert getattr(deepprop, name) is not None, name
    assert set(deepprop.__all__) >= set(deepprop._LAZY)
    assert deepprop.simulate_forward is importlib.import_module("deepprop.simulate").simulate_forward
    assert deepprop.init_ is importlib.import_module("deepprop.integrations.pytorch").init_
    assert {"diagnose", "init_", "simulate_forward", "phase_diagram", "critical_init", "Ensemble"} <= set(dir(deepprop))


def test_validation_imports_torch_only_when_a_device_is_asked_for():
    # every room imports validation, theory/ included: torch is imported inside the device checks only
    tree = ast.parse(MODULES["deepprop.validation"].read_text())
    top = {a.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for a in node.names}
    top |= {(node.module or "").split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert "torch" not in top
