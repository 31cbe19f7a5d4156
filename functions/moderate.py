"""Pulsar Function: chat-in → approved chat on `chat-approved` + one verdict per input on `moderation`.

Deployed with deploy/functions/moderate.yaml (`className: moderate.ModerateFunction`,
`processingGuarantees: MANUAL`, `retainKeyOrdering: true`, input serde bytes_serde.BytesSerDe).
This file is the thin Pulsar shell; the decisions live in chat_message (validation),
chat_moderator (rules) and chat_limits (rate/duplicate state).

Per input:
* not written by the ingress (no or a wrong `chat_sig`, checked when the function has the secret
  `chatSigningKey`: chat_signature.py), or invalid (not UTF-8, not JSON, too large,
  missing/mistyped field, newer schema major, body claiming another user/room than the ingress
  stamped): the payload goes untouched to the
  dead-letter topic with properties reason/function/source_topic (schemas/ENVELOPE.md; Python
  Functions have no DLQ of their own, docs/pulsar-functions.md §2.3), plus a "drop" verdict with rule "schema";
* valid: a verdict, and unless dropped, the (possibly masked) message on chat-approved.
Outputs are keyed by room, carry the input's properties plus `t_moderate`, and have the
client's `sent_at` as event time (docs/pulsar-functions.md §2.4: Pulsar would set none of that). The input is acked in
the callback of the last output to complete (output_ack), never before.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pulsar
from chat_config import SCHEMA, ModerationConfig, load_config
from chat_limits import Limits, MemoryLimits, StateLimits, state_available
from chat_message import ID_PATTERN, MSG_ID_PATTERN, ChatInvalid, ChatMessage, parse_chat
from chat_moderator import Decision, decide
from chat_signature import SECRET_NAME, key_from_secret, problem
from chat_verdict import verdict_json
from output_ack import Output, publish_all

FUNCTION = "moderate"


def _as_bytes(value: Any) -> bytes:
    # With the configured BytesSerDe the input is bytes; a deployment that forgot the serde gets
    # IdentitySerDe's str/int/float (docs/pulsar-functions.md §1.7), which we turn back into text rather than crash on.
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode("utf-8")


def _number(text: str | None) -> float | None:
    try:
        value = float(text) if text else None
    except ValueError:
        return None
    return value if value is not None and value > 0 else None


class ModerateFunction(pulsar.Function):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # seconds since epoch; tests replace it
        self._config: ModerationConfig | None = None
        self._limits: Limits | None = None
        self.state_mode = ""  # "state" or "memory" once decided
        self._signing_key: bytes | None = None  # the ingress's chat signing key (secret chatSigningKey)

    # --- setup -------------------------------------------------------------------------------
    def _setup(self, context: Any) -> ModerationConfig:
        config = load_config(
            context.get_user_config_map(), context.get_function_tenant(), context.get_function_namespace()
        )
        if config.state == "auto" and state_available(context):
            self._limits, self.state_mode = StateLimits(context), "state"
        else:
            self._limits = MemoryLimits(config.limits["max_users_in_memory"])
            self.state_mode = "memory"
        context.get_logger().info("moderate: %d blocklist entries, counters in %s", len(config.blocklist),
                                  self.state_mode)  # fmt: skip
        self._signing_key = key_from_secret(context.get_secret(SECRET_NAME))
        if self._signing_key is None:
            context.get_logger().warning(
                "moderate: no secret %s, so chat is NOT checked for the ingress's signature: any role that may "
                "produce on chat-in can speak as any user (give the secret: deploy/README.md)", SECRET_NAME)
        self._config = config
        return config

    def _now_ms(self, properties: dict[str, str]) -> int:
        # The ingress's publish time is when the user sent it, also when a backlog is replayed
        # after an outage; the wall clock is the fallback for producers that do not stamp it.
        stamped = _number(properties.get("t_ingress"))
        return int(stamped) if stamped is not None else int(self.clock() * 1000)

    # --- per message -------------------------------------------------------------------------
    def process(self, input: Any, context: Any) -> None:  # noqa: A002 - the SDK's parameter name
        config = self._config or self._setup(context)
        payload = _as_bytes(input)
        properties = context.get_message_properties()
        now_ms = self._now_ms(properties)
        try:
            self._check_producer(payload, properties, context)
            msg = parse_chat(payload, config.limits["max_message_bytes"])
            self._check_identity(msg, properties)
        except ChatInvalid as exc:
            publish_all(context, self._rejection(exc, payload, properties, context, config), FUNCTION)
            return None
        decision = self._decide(msg, now_ms, context, config)
        publish_all(context, self._outputs(msg, decision, properties, config), FUNCTION)
        context.record_metric(f"moderate_{decision.action}", 1)
        for rule in decision.rules:
            context.record_metric(f"moderate_rule_{rule}", 1)
        return None

    def _check_producer(self, payload: bytes, properties: dict[str, str], context: Any) -> None:
        # Only the ingress holds the key: a message it did not sign was written by another producer.
        if self._signing_key is None:
            context.record_metric("moderate_unverified", 1)
            return
        found = problem(self._signing_key, properties, payload)
        if found is not None:
            raise ChatInvalid(*found)

    @staticmethod
    def _check_identity(msg: ChatMessage, properties: dict[str, str]) -> None:
        # The ingress stamps the authenticated user and room as properties; a body naming someone
        # else is an impersonation attempt, not a chat message.
        for name in ("user", "room"):
            stamped = properties.get(name)
            if stamped and stamped != getattr(msg, name):
                exc = ChatInvalid(f"{name}_mismatch", f"body says {name} {getattr(msg, name)!r}, "
                                  f"ingress says {stamped!r}")  # fmt: skip
                exc.partial = {"msg_id": msg.msg_id}
                raise exc

    def _decide(self, msg: ChatMessage, now_ms: int, context: Any, config: ModerationConfig) -> Decision:
        assert self._limits is not None
        try:
            return decide(msg, config, self._limits, now_ms)
        except Exception as exc:
            if self.state_mode != "state":
                raise
            # State storage stopped answering: keep moderating with per-instance counters rather
            # than stall the room (the nack would redeliver it in 60 s, forever: docs/pulsar-functions.md §2.3).
            context.get_logger().error("moderate: state storage failed (%s); counting in memory from now on", exc)
            context.record_metric("moderate_state_fallback", 1)
            self._limits, self.state_mode = MemoryLimits(config.limits["max_users_in_memory"]), "memory"
            return decide(msg, config, self._limits, now_ms)

    def _outputs(
        self, msg: ChatMessage, decision: Decision, properties: dict[str, str], config: ModerationConfig,
    ) -> list[Output]:  # fmt: skip
        stamp = str(int(self.clock() * 1000))
        event_time = int(msg.sent_at)
        common = {**properties, "room": msg.room, "user": msg.user, "msg_id": msg.msg_id, "t_moderate": stamp}
        if msg.stream:
            common["stream"] = msg.stream
        outputs: list[Output] = []
        if decision.text is not None:
            body = msg.to_json(text=decision.text, masked=decision.action == "mask", flagged=decision.flagged)
            props = {**common, "kind": "chat", "codec": "json", "moderation": decision.action}
            outputs.append(Output(config.approved_topic, body, props, msg.room, event_time))
        verdict = verdict_json(
            msg_id=msg.msg_id, room=msg.room, user=msg.user, action=decision.action, rules=decision.rules,
            reason=decision.reason, decided_at=int(stamp), flagged=decision.flagged, stream=msg.stream,
            sent_at=msg.sent_at, masked_text=decision.text if decision.action == "mask" else None,
        )  # fmt: skip
        props = {**common, "codec": "json", "action": decision.action}
        props.pop("kind", None)
        outputs.append(Output(config.verdict_topic, verdict, props, msg.room, event_time))
        return outputs

    def _rejection(
        self, exc: ChatInvalid, payload: bytes, properties: dict[str, str], context: Any, config: ModerationConfig,
    ) -> list[Output]:  # fmt: skip
        source = context.get_current_message_topic_name()
        key = context.get_message_key() or None
        event_time = context.get_message_eventtime() or None
        context.get_logger().warning("moderate: dead-letter %s from %s (%s): %s", context.get_message_id(), source,
                                     exc.reason, exc.detail)  # fmt: skip
        context.record_metric("moderate_dead_letter", 1)
        context.record_metric(f"moderate_dead_letter_{exc.reason.split(':', 1)[0]}", 1)
        stamp = str(int(self.clock() * 1000))
        dead = {**properties, "reason": exc.reason, "detail": exc.detail[:200], "function": FUNCTION,
                "source_topic": source, "t_moderate": stamp}  # fmt: skip
        room = _valid_id(properties.get("room")) or _valid_id(exc.partial.get("room")) or _valid_id(key)
        user = _valid_id(properties.get("user")) or _valid_id(exc.partial.get("user"))
        msg_id = exc.partial.get("msg_id")
        msg_id = msg_id if isinstance(msg_id, str) and MSG_ID_PATTERN.fullmatch(msg_id) else None
        verdict = verdict_json(msg_id=msg_id, room=room, user=user, action="drop", rules=(SCHEMA,),
                               reason=f"{exc.reason}: {exc.detail}", decided_at=int(stamp))  # fmt: skip
        verdict_props = {k: v for k, v in properties.items() if k != "kind"}
        verdict_props.update({"codec": "json", "action": "drop", "reason": exc.reason, "t_moderate": stamp})
        for name, value in (("room", room), ("user", user), ("msg_id", msg_id)):
            if value:
                verdict_props[name] = value
        return [
            Output(config.dead_letter_topic, payload, dead, key, event_time),
            Output(config.verdict_topic, verdict, verdict_props, room, event_time),
        ]


def _valid_id(value: Any) -> str | None:
    return value if isinstance(value, str) and ID_PATTERN.fullmatch(value) else None
