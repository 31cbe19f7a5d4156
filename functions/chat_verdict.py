"""The verdict published to `moderation` for every chat input (schemas/verdict.schema.json).

A verdict carries the sender (`user`) and the client's `msg_id`, so the ingress can tell the
sender that a message was dropped or changed, and moderators can audit every decision.
"""

from __future__ import annotations

from typing import Any

from chat_config import Action
from chat_message import ENCODER

VERDICT_SCHEMA_VERSION = 1
ACTIONS = ("allow", "mask", "drop", "flag")


def verdict_json(
    *,
    msg_id: str | None,
    room: str | None,
    user: str | None,
    action: Action,
    rules: tuple[str, ...] | list[str],
    reason: str,
    decided_at: int,
    masked_text: str | None = None,
    flagged: bool = False,
    stream: str | None = None,
    sent_at: float | None = None,
) -> bytes:
    if action not in ACTIONS:
        raise ValueError(f"unknown verdict action {action!r}")
    body: dict[str, Any] = {
        "v": VERDICT_SCHEMA_VERSION,
        "msg_id": msg_id,
        "room": room,
        "user": user,
        "action": action,
        "rules": list(rules),
        "reason": reason,
        "flagged": flagged,
        "decided_at": decided_at,
    }
    if stream is not None:
        body["stream"] = stream
    if sent_at is not None:
        body["sent_at"] = sent_at
    if action == "mask":
        body["masked_text"] = masked_text if masked_text is not None else ""
    return ENCODER.encode(body).encode("utf-8")
