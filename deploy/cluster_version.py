"""Refuse a cluster too old for our FunctionConfigs, before anything is created on it.

Every pipeline function sets `retainKeyOrdering: true` (a Key_Shared input subscription keeps each
stream's frames, codec state and chat counters on one instance). Pulsar's Python runtime ignored that
flag, and admin servers refused it for Python, until the change that gave Python functions a
Key_Shared subscription for it: merged in July 2023, first released in Apache Pulsar 3.1.0
(docs/real-pulsar.md §7). On an older cluster the functions would run with the wrong subscription
type or not be created at all, so the deploy stops with that reason instead.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MIN_RETAIN_KEY_ORDERING_PYTHON = (3, 1, 0)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """`4.0.8`, `"3.3.2"`, `3.1.0-SNAPSHOT` -> (major, minor, patch); None when there is no version in it."""
    match = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def version_problem(version_text: str | None, configs: Iterable[Mapping[str, Any]], admin_url: str) -> str | None:
    """Why this cluster cannot take `configs`, or None when it can (or its version is unknown)."""
    needing = sorted(str(c.get("name")) for c in configs if c.get("retainKeyOrdering"))
    if not needing or version_text is None:
        return None
    version = parse_version(version_text)
    if version is None or version >= MIN_RETAIN_KEY_ORDERING_PYTHON:
        return None
    minimum = ".".join(map(str, MIN_RETAIN_KEY_ORDERING_PYTHON))
    return (f"Apache Pulsar {'.'.join(map(str, version))} at {admin_url} is older than {minimum}, the first release "
            f"whose Python runtime honours retainKeyOrdering (a Key_Shared input), which {', '.join(needing)} "
            f"set to keep each stream on one instance: upgrade the cluster to {minimum} or newer.")
