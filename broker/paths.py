"""Every file path the broker builds from a client-supplied name (docs/names.md, "Files").

`inside(base, *components)` joins file-name components (callers percent-encode free-text names
with `schemas.names.file_name`; tenant and namespace names are already plain by the name rule)
and proves the result stays inside `base`: no component may be empty, `.` or `..`, or hold a `/`
or NUL, and the joined path, with symbolic links resolved, must lie under `base`.
"""

from __future__ import annotations

from pathlib import Path


class PathEscape(ValueError):
    """A built path would leave the broker's data directory."""


def inside(base: Path, *components: str) -> Path:
    if not components:
        raise PathEscape("no path components given")
    for component in components:
        if not component or component in (".", "..") or "/" in component or "\x00" in component:
            raise PathEscape(f"path component {component!r} is not a plain file name")
    path = base.joinpath(*components)
    root = base.resolve()
    resolved = path.resolve()
    if resolved != root and not resolved.is_relative_to(root):
        raise PathEscape(f"path {'/'.join(components)!r} would leave the data directory {root}")
    return path
