"""Which package may use which: the ingress does not depend on its clients, the clients not on the
tools built on them, and test material stays under tests/ (only tests and benches import it).

Read from the same import graph as test_import_graph.py (every import, also inside functions and
under ``if TYPE_CHECKING:``).
"""

from __future__ import annotations

from tests.test_import_graph import PACKAGES, import_graph

ALL = (*PACKAGES, "broker", "tests")
# package -> the packages none of its modules may import
FORBIDDEN: dict[str, set[str]] = {
    "ingress": {"clients", "audit", "wtpulsar", "bench", "tests"},
    "schemas": set(ALL) - {"schemas"},
    "clients": {"audit", "wtpulsar", "bench", "tests"},
    "audit": {"wtpulsar", "bench", "tests"},
    "functions": set(ALL) - {"functions"},
    **{package: {"tests", "bench"} for package in ("broker", "localrun", "deploy", "wtpulsar", "realpulsar")},
}


def violations(graph: dict[str, set[str]], forbidden: dict[str, set[str]]) -> list[str]:
    """``importer -> imported`` for every import that crosses a forbidden line, sorted."""
    return sorted(f"{module} -> {target}" for module, targets in graph.items() for target in targets
                  if target.split(".")[0] in forbidden.get(module.split(".")[0], set()))


def test_packages_import_only_what_their_layer_may() -> None:
    graph = import_graph(ALL)
    assert {"clients.webtransport", "audit.cli", "tests.media_synth"} <= graph.keys()
    assert violations(graph, FORBIDDEN) == []


def test_the_check_flags_a_forbidden_import() -> None:
    graph = {"ingress.server": {"clients.webtransport", "schemas.names"}, "clients.consume": {"ingress.viewer"},
             "functions": {"tests.media_synth"}}
    assert violations(graph, FORBIDDEN) == ["functions -> tests.media_synth", "ingress.server -> clients.webtransport"]
