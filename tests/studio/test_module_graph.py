"""The project's modules import each other without a cycle (imports inside functions count;
those under `if TYPE_CHECKING:` do not, they never run), and in layers: the product (studio, the servers,
scripts, deploy) imports none of the harness, the benchmarks or the tests; the harness neither the
benchmarks nor the tests; the benchmarks not the tests."""

from __future__ import annotations

import ast
from pathlib import Path

from harness import REPO

PACKAGES = ("studio", "server1", "server2", "scripts", "deploy", "harness", "bench", "tests")
# What each layer may not import: only ever a layer above it.
BELOW = {
    "studio": ("harness", "bench", "tests"),
    "server1": ("harness", "bench", "tests"),
    "server2": ("harness", "bench", "tests"),
    "scripts": ("harness", "bench", "tests"),
    "deploy": ("harness", "bench", "tests"),
    "harness": ("bench", "tests"),
    "bench": ("tests",),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def runtime_imports(tree: ast.AST) -> list[str]:
    """Imported names ('a.b' and, for `from a import b`, 'a.b'), skipping TYPE_CHECKING blocks."""
    names: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
            names.append(node.module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return names


def graph() -> dict[str, set[str]]:
    files = [p for package in PACKAGES for p in (REPO / package).rglob("*.py")]
    modules = {module_name(p): p for p in files}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for imported in runtime_imports(ast.parse(path.read_text(), str(path))):
            if imported in modules and imported != name:
                targets.add(imported)
        # `from a import b` names a.b when b is a module; then the edge to a (its package) is implied.
        edges[name] = {t for t in targets if not any(o.startswith(t + ".") for o in targets)}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            connect(v)
    return found


def test_the_module_graph_has_no_cycle() -> None:
    edges = graph()
    assert "server2.service" in edges and "server2.dispatch" in edges["server2.service"]  # the graph is read
    assert cycles(edges) == []


def test_no_layer_imports_one_above_it() -> None:
    edges = graph()
    assert "bench.soak" in edges and "harness.aws" in edges["bench.soak"]  # the harness is in the graph
    upward = [
        f"{module} -> {target}"
        for module, targets in edges.items()
        for target in targets
        if target.split(".")[0] in BELOW.get(module.split(".")[0], ())
    ]
    assert upward == []


def test_the_check_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
