"""Which third-party modules a function needs: the import closure of its entry module.

A Python function's archive must carry every dependency as a wheel, except what the worker's
Python already has (docs/pulsar-functions.md §4: pulsar-client with its functions extras). The closure
starts at the className module (and custom serde modules) and follows imports of sibling modules
in the functions folder; anything else that is not the standard library is a dependency.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

# docs/pulsar-functions.md §4: the official image installs pulsar-client with its functions extras (grpcio, protobuf,
# prometheus_client, ratelimit, apache-bookkeeper-client), so these never go into deps/.
WORKER_PROVIDED = frozenset({"pulsar", "_pulsar", "google", "grpc", "prometheus_client", "ratelimit",
                             "bookkeeper"})  # fmt: skip


class ImportScanError(ValueError):
    """A function module that cannot be read or parsed; the message names the file."""


@dataclass
class ImportClosure:
    local: set[str] = field(default_factory=set)  # sibling modules reached from the roots
    third_party: dict[str, set[str]] = field(default_factory=dict)  # module -> files importing it


def imported_names(path: Path) -> set[str]:
    """Top-level names of every absolute import in a file, including imports inside functions."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (OSError, SyntaxError, UnicodeDecodeError) as exc:
        raise ImportScanError(f"{path}: cannot scan imports: {exc}") from exc
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def import_closure(src_dir: Path, roots: list[str]) -> ImportClosure:
    """Follow imports from ``roots`` (module names in ``src_dir``) through sibling modules."""
    siblings = {p.stem: p for p in sorted(src_dir.glob("*.py"))}
    closure = ImportClosure()
    pending = [r for r in roots if r in siblings]
    while pending:
        module = pending.pop()
        if module in closure.local:
            continue
        closure.local.add(module)
        for name in imported_names(siblings[module]):
            if name in siblings:
                pending.append(name)
            elif name != "__future__" and name not in sys.stdlib_module_names and name not in WORKER_PROVIDED:
                closure.third_party.setdefault(name, set()).add(siblings[module].name)
    return closure
