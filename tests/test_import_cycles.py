"""No import cycles inside residual_lab.

The graph is read from the source (``ast``), not from ``sys.modules``, so it sees every
import a module can execute: module-level ones and those inside functions (a deferred
import still makes the two modules depend on each other; deferring only hides the cycle
from Python's loader). Importing ``a.b.c`` also runs ``a/b/__init__.py``, so an import of
a submodule is an arrow to each package above it too, except the importer's own packages
(a module is always loaded after its package; that containment is not a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import residual_lab

PACKAGE_DIR = Path(residual_lab.__file__).parent
ROOT = PACKAGE_DIR.name


def _module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every ``.py`` under the package."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _imported_names(tree: ast.Module, module: str, is_package: bool) -> set[str]:
    """Every dotted name the module imports, anywhere in its body; ``from m import x`` gives
    both ``m`` and ``m.x`` (``x`` may be a submodule; non-modules are dropped by the caller)."""
    package = module if is_package else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the importing package
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            names.add(source)
            names.update(f"{source}.{alias.name}" for alias in node.names)
    return names


def import_graph(package_dir: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (see the module docstring for what counts)."""
    files = _module_files(package_dir)
    graph = {}
    for module, path in files.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        own_packages = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 2)}
        targets = set()
        for name in _imported_names(tree, module, path.name == "__init__.py"):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):
                target = ".".join(parts[:i])
                if target in files and target not in own_packages:
                    targets.add(target)
        graph[module] = targets
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest cycle (``[a, b, ..., a]``) per strongly connected component with more than
    one module (or a module importing itself), found by Tarjan's algorithm."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                components.append(set(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_shortest_cycle(graph, component) for component in components]


def _shortest_cycle(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """Breadth-first from the component's first module back to itself, inside the component."""
    start = min(component)
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph[v] & component):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if v != start else [start, start]
                if w not in parents:
                    parents[w] = v
                    following.append(w)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def test_graph_sees_function_level_and_package_imports(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from pkg.sub.leaf import f\n")
    (pkg / "sub" / "leaf.py").write_text("def f():\n    from pkg import top\n")
    (pkg / "top.py").write_text("from . import other\nimport pkg.sub.leaf\n")
    (pkg / "other.py").write_text("")
    graph = import_graph(pkg)
    assert graph == {"pkg": set(), "pkg.sub": {"pkg.sub.leaf"}, "pkg.sub.leaf": {"pkg.top"},
                     "pkg.top": {"pkg.other", "pkg.sub", "pkg.sub.leaf"}, "pkg.other": set()}
    assert find_cycles(graph) == [["pkg.sub", "pkg.sub.leaf", "pkg.top", "pkg.sub"]]


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50  # the walk found the package
    cycles = find_cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


#: Subpackages and the ones each must not import: a net knows nothing of what measures or
#: reads it; a measurement (probe, callback) nothing of another kind or of finished runs.
FORBIDDEN = {
    "models": {"callbacks", "probes", "results"},
    "probes": {"callbacks", "results"},
    "callbacks": {"probes", "results"},
}


def test_no_upward_imports():
    graph = import_graph()
    upward = sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                    if (low := module.split(".")[1:2]) and low[0] in FORBIDDEN
                    and target.split(".")[1:2] and target.split(".")[1] in FORBIDDEN[low[0]])
    assert not upward, "imports against the layering:\n" + "\n".join(upward)
