"""Shared helpers for the moderate/route tests (no tests here).

Pulsar puts the function code's folder first on sys.path and imports modules by file name
(docs/pulsar-functions.md §1.1), so the tests put functions/ on sys.path and import `moderate`,
`route`, `chat_*` and `routing_*` the same way.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.fake_context import FakeContext, Published

ROOT = Path(__file__).resolve().parents[1]
FUNCTIONS_DIR = ROOT / "functions"
SCHEMAS_DIR = ROOT / "schemas"
if str(FUNCTIONS_DIR) not in sys.path:
    sys.path.insert(0, str(FUNCTIONS_DIR))

# The function modules, imported the way the Pulsar instance imports them; tests take them from here.
import chat_blocklist  # noqa: E402
import chat_config  # noqa: E402
import chat_fold  # noqa: E402
import chat_limits  # noqa: E402
import chat_links  # noqa: E402
import chat_message  # noqa: E402
import chat_signature  # noqa: E402
import moderate  # noqa: E402
import output_ack  # noqa: E402
import route  # noqa: E402
import routing_table  # noqa: E402

__all__ = ["chat_blocklist", "chat_config", "chat_fold", "chat_limits", "chat_links", "chat_message", "chat_signature", "moderate",
           "route", "output_ack", "routing_table"]  # fmt: skip

NS = "persistent://public/wtpulsar"
CHAT_IN = f"{NS}/chat-in"
APPROVED = f"{NS}/chat-approved"
VERDICTS = f"{NS}/moderation"
DEAD_LETTER = f"{NS}/dead-letter"
UNROUTABLE = f"{NS}/unroutable"
NOW_MS = 1_800_000_000_000  # a fixed "now", on a 10 s window boundary


def chat(text: str = "hello there", *, user: str = "alice", room: str = "lobby", msg_id: str = "m1",
         sent_at: float = NOW_MS, **extra: Any) -> bytes:  # fmt: skip
    body: dict[str, Any] = {"room": room, "user": user, "msg_id": msg_id, "text": text, "sent_at": sent_at}
    body.update(extra)
    return json.dumps(body, ensure_ascii=False).encode("utf-8")


def moderate_context(user_config: dict[str, Any] | None = None, **kwargs: Any) -> FakeContext:
    return FakeContext(user_config=user_config, input_topics=[CHAT_IN], function_name="moderate",
                       current_topic=CHAT_IN, **kwargs)  # fmt: skip


def send(fn: Any, ctx: FakeContext, payload: bytes, *, user: str | None = "alice", room: str | None = "lobby",
         t_ingress: int | None = NOW_MS, key: str | None = None) -> list[Published]:  # fmt: skip
    """Feed one chat-in message the way the ingress would stamp it; return what it published."""
    props: dict[str, str] = {"kind": "chat", "codec": "json"}
    if user is not None:
        props["user"] = user
    if room is not None:
        props["room"] = room
    if t_ingress is not None:
        props["t_ingress"] = str(t_ingress)
    before = len(ctx.published)
    ctx.set_message(topic=CHAT_IN, key=key if key is not None else (room or ""), properties=props,
                    event_time=t_ingress or 0)  # fmt: skip
    fn.process(payload, ctx)
    return ctx.published[before:]


def by_topic(published: list[Published], topic: str) -> list[Published]:
    return [p for p in published if p.topic == topic]


def verdict_of(published: list[Published]) -> dict[str, Any]:
    verdicts = by_topic(published, VERDICTS)
    assert len(verdicts) == 1, f"expected one verdict, got {len(verdicts)}"
    return json.loads(verdicts[0].payload)


def load_schema(name: str) -> dict[str, Any]:
    return json.loads((SCHEMAS_DIR / name).read_text())
