"""No import circle inside a package: a module's imports, read with ``ast`` (also those inside functions
and under ``if TYPE_CHECKING:``, where a circle hides), form a graph without a cycle.

A circle hidden by a function-level import still ties the modules together: neither can be read,
moved or tested without the other. Checked for ``ingress/``, whose shared state once lived with the
servers that start it.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("ingress",)


def imported_modules(source: str, package: str) -> set[str]:
    """Modules of ``package`` that ``source`` imports anywhere in it (``from package import x`` counts
    ``package.x`` when that is a module of the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith(package + "."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module == package:
                found.update(f"{package}.{alias.name}" for alias in node.names)
            elif node.module.startswith(package + "."):
                found.add(node.module)
    return found


def import_graph(package: str) -> dict[str, set[str]]:
    modules = {f"{package}.{p.stem}": p for p in sorted((ROOT / package).glob("*.py")) if p.stem != "__init__"}
    return {name: imported_modules(path.read_text(encoding="utf-8"), package) & modules.keys() - {name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as the list of modules along it (first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle is not None:
                return cycle
    return None


def test_no_import_circle_in_the_packages() -> None:
    for package in PACKAGES:
        assert find_cycle(import_graph(package)) is None, " -> ".join(find_cycle(import_graph(package)) or [])


def test_the_check_sees_circles_hidden_in_functions_and_type_checking() -> None:
    a = "from __future__ import annotations\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.b import B\n"
    b = "def f():\n    from p import a\n    return a\n"
    graph = {"p.a": imported_modules(a, "p"), "p.b": imported_modules(b, "p")}
    assert graph == {"p.a": {"p.b"}, "p.b": {"p.a"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.a"]
    assert find_cycle({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": set()}) is None
