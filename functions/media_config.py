"""Reading userConfig without ever failing: a bad value is logged and replaced by its default.

`get_user_config_map()` returns `[]` when no userConfig was given (docs/pulsar-functions.md §1.3),
and an exception while configuring would become a nack and a 60 s redelivery loop (§2.3), so
config errors must not raise out of `process()`.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


def user_config(context: Any) -> dict[str, Any]:
    cfg = context.get_user_config_map()
    return cfg if isinstance(cfg, dict) else {}


def number(cfg: dict[str, Any], key: str, default: float, *, minimum: float, integer: bool = True) -> Any:
    """cfg[key] as an int (or float) >= minimum; the default, with an ERROR log line, otherwise."""
    raw = cfg.get(key, default)
    try:
        value = int(raw) if integer else float(raw)
        if isinstance(raw, bool) or value < minimum:
            raise ValueError(f"must be >= {minimum}")
    except (TypeError, ValueError) as exc:
        log.error("userConfig %s=%r rejected (%s); using %r", key, raw, exc, default)
        return default
    return value


def text(cfg: dict[str, Any], key: str, default: str, *, choices: tuple[str, ...] | None = None) -> str:
    raw = cfg.get(key, default)
    if not isinstance(raw, str) or not raw or (choices is not None and raw not in choices):
        log.error("userConfig %s=%r rejected (want %s); using %r", key, raw, choices or "a string", default)
        return default
    return raw
