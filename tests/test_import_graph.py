"""No import circle: the project's modules and their imports, read with ``ast`` (also those inside
functions and under ``if TYPE_CHECKING:``, where a circle hides), form a graph without a cycle.

A circle hidden by a function-level import still ties the modules together: neither can be read,
moved or tested without the other. ``ingress/`` once had one (its shared state lived with the servers
that start it); ``broker/`` had one between its topic and subscription (and non-persistent routing),
until they met through ``broker/entries.py`` and small Protocols.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("broker", "ingress", "schemas", "functions", "localrun", "deploy", "wtpulsar", "audit", "clients", "realpulsar", "bench")


def imported_modules(source: str, packages: tuple[str, ...]) -> set[str]:
    """Names that ``source`` imports anywhere in it from ``packages``: ``import p.m`` and ``from p.m
    import x`` give ``p.m``; ``from p import x`` gives ``p`` and ``p.x`` (x may be a module)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] in packages)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
            if node.module.split(".")[0] in packages:
                found.add(node.module)
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    """Module -> the project modules it imports (a package's ``__init__`` stands for the package)."""
    paths = {module_name(p): p for package in packages for p in sorted((ROOT / package).rglob("*.py"))}
    return {name: imported_modules(path.read_text(encoding="utf-8"), packages) & paths.keys() - {name}
            for name, path in paths.items()}


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
    graph = import_graph()
    assert len(graph) > 100 and "ingress.webtransport_server" in graph["ingress.server"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_the_check_sees_circles_hidden_in_functions_and_type_checking() -> None:
    a = "from __future__ import annotations\nfrom typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.b import B\n"
    b = "def f():\n    from p import a\n    return a\n"
    modules = {"p", "p.a", "p.b"}
    graph = {"p.a": imported_modules(a, ("p",)) & modules, "p.b": imported_modules(b, ("p",)) & modules}
    assert graph == {"p.a": {"p.b"}, "p.b": {"p", "p.a"}}
    assert find_cycle(graph) == ["p.a", "p.b", "p.a"]
    assert find_cycle({"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": set()}) is None
