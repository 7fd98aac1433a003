"""The installed namespace's import graph points one way: kernels <- domain <- training <- Lightning <- applications.

Every module of ``egakit`` is parsed with :mod:`ast` (no import runs), top-level and function-level
(lazy) imports alike, including ``if TYPE_CHECKING:`` blocks: a lazy import is still a dependency.
The folders map onto the installed names as pyproject's ``package-dir`` does::

    egakit/      -> egakit.*          kernels/     -> egakit.kernels.*
    lit_modules/ -> egakit.lit.*      datamodules/ -> egakit.data.*      perf/ -> egakit.perf.*

Layers (a module may import its own layer or a lower one, never a higher one):

    0  egakit.kernels                         imports nothing of egakit outside itself
    1  egakit.errors, egakit.provenance, egakit.batch, egakit.sim, egakit.features, egakit.model,
       egakit.auction, egakit.flops, egakit.checkpoint
                                              the domain: world, features, model, mechanisms;
                                              checkpoint files (it reads only model.config and
                                              sim.schema, and baselines.checkpoint builds on it)
    2  egakit.training, egakit.metrics, egakit.baselines
                                              losses, metrics, baselines
    3  egakit.lit, egakit.data                Lightning modules and data modules
    4  egakit (the package itself), egakit.__main__, egakit.cli, egakit.lightning_cli, egakit.demo,
       egakit.allocate, egakit.evaluate, egakit.evaluation, egakit.reporting, egakit.readme,
       egakit.perf                            applications

Cycles are checked twice: between *packages* (``egakit.sim``, ``egakit.model``, ``egakit.cli``:
the second name component; this is what keeps the layers' insides one-way too) and between *modules* (a strongly connected component of more than one module),
counting every import edge. A package's ``__init__`` that re-exports its submodules is an edge
``pkg -> pkg.sub``; ``from pkg import name`` is an edge to ``pkg`` when ``name`` is defined there and to
``pkg.name`` when that is a module, so a submodule reading its own package's ``__init__`` re-exports
while ``__init__`` imports it back is a cycle, and is reported. Relative imports are resolved against the importing module.

Known violations in files other branches are changing are listed in :data:`ALLOWED_UPWARD` and
:data:`ALLOWED_CYCLES`, each with its reason; the lead removes an entry once its fix is merged. An
allowed entry that no longer occurs fails the test too, so the list cannot go stale.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parent.parent
#: folder → installed package name (pyproject ``[tool.setuptools.package-dir]``).
PACKAGE_DIRS = {
    "egakit": "egakit",
    "kernels": "egakit.kernels",
    "lit_modules": "egakit.lit",
    "datamodules": "egakit.data",
    "perf": "egakit.perf",
}

#: module-name prefix → layer (the longest matching prefix wins).
LAYERS = {
    "egakit.kernels": 0,
    "egakit.errors": 1,
    "egakit.provenance": 1,
    "egakit.batch": 1,
    "egakit.sim": 1,
    "egakit.features": 1,
    "egakit.model": 1,
    "egakit.auction": 1,
    "egakit.flops": 1,
    "egakit.checkpoint": 1,
    "egakit.training": 2,
    "egakit.metrics": 2,
    "egakit.baselines": 2,
    "egakit.lit": 3,
    "egakit.data": 3,
    "egakit": 4,  # the package __init__, __main__, cli, demo, allocate, evaluate, evaluation, ...
    "egakit.perf": 4,
}

#: (importer, imported) edges that cross a layer upwards, allowed for now: {edge: reason}.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

#: Import cycles allowed for now: {frozenset of the modules in the cycle: reason}.
ALLOWED_CYCLES: dict[frozenset[str], str] = {}


# ---------------------------------------------------------------------------------------------
# Reading the graph
# ---------------------------------------------------------------------------------------------
def module_files() -> dict[str, Path]:
    """Installed module name → source file, for every ``.py`` under the package folders."""
    found: dict[str, Path] = {}
    for folder, package in PACKAGE_DIRS.items():
        root = REPO / folder
        for path in sorted(root.rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _resolve_relative(module: str, is_package: bool, level: int, target: Optional[str]) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (level - 1)] if level > 1 else base
    return ".".join(base + ([target] if target else []))


def imported_names(module: str, path: Path) -> Iterator[tuple[str, tuple[str, ...]]]:
    """``(imported module, names taken from it)`` for every import in ``module`` (absolute names,
    top-level and lazy, egakit or not); ``import a.b`` gives ``("a.b", ())``."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module) if node.level else node.module or ""
            )
            yield base, tuple(alias.name for alias in node.names)


def _owner(name: str, modules: set[str]) -> Optional[str]:
    """The known module ``name`` refers to: itself, or its longest known prefix (``a.b.func`` → ``a.b``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> dict[str, set[str]]:
    """module → the egakit modules it imports (self-edges dropped).

    ``from pkg import sub`` (``sub`` a module) is an edge to ``pkg.sub`` only: Python runs
    ``pkg/__init__`` before any of its submodules anyway, so that implicit parent edge is not
    counted for any import. ``from pkg import name`` (``name`` defined in ``pkg/__init__``) is an
    edge to ``pkg``: the importer reads the package's re-exports.
    """
    files = module_files()
    modules = set(files)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in files.items():
        for base, names in imported_names(module, path):
            if base != "egakit" and not base.startswith("egakit."):
                continue
            submodules = [f"{base}.{n}" for n in names if f"{base}.{n}" in modules]
            targets = set(submodules)
            if len(submodules) < len(names) or not names:
                targets.add(_owner(base, modules))
            graph[module] |= {t for t in targets if t is not None and t != module}
    return graph


def layer_of(module: str) -> int:
    prefix = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[prefix]


def upward_edges(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """Edges from a module to a module of a higher layer."""
    return sorted((a, b) for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[frozenset[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    out.append(frozenset(component))
    return out


def _cycle_edges(graph: dict[str, set[str]], component: frozenset[str]) -> list[str]:
    return sorted(f"{a} -> {b}" for a in component for b in graph[a] if b in component)


# ---------------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return import_graph()


def test_the_graph_sees_every_package_and_lazy_imports(graph):
    """The parser found the namespace (a broken mapping would make the other tests vacuous)."""
    for package in PACKAGE_DIRS.values():
        assert package in graph, f"{package} not found under {REPO}"
    assert len(graph) > 50
    assert any(b.startswith("egakit.kernels") for b in graph["egakit.model.generator"])


def test_layer_table_covers_every_module(graph):
    for module in graph:
        assert layer_of(module) in range(5), module


def test_no_upward_import_across_layers(graph):
    found = upward_edges(graph)
    unexpected = [
        f"{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})" for a, b in found if (a, b) not in ALLOWED_UPWARD
    ]
    stale = [f"{a} -> {b}" for a, b in ALLOWED_UPWARD if (a, b) not in found]
    assert not unexpected, "imports that point up a layer:\n  " + "\n  ".join(unexpected)
    assert not stale, "ALLOWED_UPWARD entries that no longer occur (remove them):\n  " + "\n  ".join(stale)


def test_kernels_import_nothing_of_egakit_outside_themselves(graph):
    bad = sorted(f"{a} -> {b}" for a, t in graph.items() if a.startswith("egakit.kernels") for b in t
                 if not b.startswith("egakit.kernels"))
    assert not bad, "egakit.kernels must only import itself:\n  " + "\n  ".join(bad)


def test_no_import_cycle_between_modules(graph):
    found = cycles(graph)
    unexpected = [c for c in found if c not in ALLOWED_CYCLES]
    stale = [sorted(c) for c in ALLOWED_CYCLES if c not in found]
    message = "\n".join("cycle:\n    " + "\n    ".join(_cycle_edges(graph, c)) for c in unexpected)
    assert not unexpected, message
    assert not stale, f"ALLOWED_CYCLES entries that no longer occur (remove them): {stale}"


def package_of(module: str) -> str:
    """``egakit.sim.io`` → ``egakit.sim``; ``egakit.cli`` → ``egakit.cli``; ``egakit`` → ``egakit``."""
    return ".".join(module.split(".")[:2])


def test_no_import_cycle_between_packages(graph):
    packages: dict[str, set[str]] = {}
    for a, targets in graph.items():
        packages.setdefault(package_of(a), set())
        packages[package_of(a)] |= {package_of(b) for b in targets if package_of(b) != package_of(a)}
    unexpected = [c for c in cycles(packages) if c not in ALLOWED_CYCLES]
    message = "\n".join("package cycle:\n    " + "\n    ".join(_cycle_edges(packages, c)) for c in unexpected)
    assert not unexpected, message


def test_cycle_finder_finds_a_known_cycle():
    """The detector itself: a three-module ring and a tail."""
    ring = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set()}
    assert cycles(ring) == [frozenset("abc")]
    assert cycles({"a": {"b"}, "b": set()}) == []
