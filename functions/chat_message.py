"""Parse and validate one chat message (schemas/chat.schema.json), with a precise reason on failure.

The function package cannot import `schemas/` (a Pulsar worker only has functions/*.py), so the
schema's rules live here as code and `tests/test_functions_chat_message.py` checks that both
agree. Every rejection carries a reason code of the form `<problem>[:<field>]`, which becomes
the dead-letter message's `reason` property (ENVELOPE.md) and the verdict's reason.

Versioning: `v` is the chat schema's major version (absent means 1). Fields added later are
ignored here, so a newer minor version still passes; a newer major version is rejected as
`unsupported_version` rather than guessed at.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

CHAT_SCHEMA_VERSION = 1
ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # room, user, stream (ENVELOPE.md "Names")
MSG_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,128}$")
DEFAULT_MAX_MESSAGE_BYTES = 16_384  # bytes of JSON; larger payloads are rejected unread
REQUIRED = ("room", "user", "msg_id", "text", "sent_at")


class ChatInvalid(ValueError):
    """A chat payload that is not a valid chat message."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason  # machine-readable code, e.g. "missing_field:text"
        self.detail = detail  # one human sentence
        self.partial: dict[str, Any] = {}  # fields that did parse (room/user/msg_id), for the verdict


@dataclass(frozen=True)
class ChatMessage:
    room: str
    user: str
    msg_id: str
    text: str
    sent_at: float  # ms since epoch, as the client sent it
    stream: str | None = None
    reply_to: str | None = None
    v: int = CHAT_SCHEMA_VERSION

    def to_json(self, *, text: str | None = None, masked: bool = False, flagged: bool = False) -> bytes:
        """The message as approved chat. Unknown input fields are not carried to viewers."""
        body: dict[str, Any] = {"v": self.v, "room": self.room, "user": self.user, "msg_id": self.msg_id}
        if self.stream is not None:
            body["stream"] = self.stream
        body["text"] = self.text if text is None else text
        body["sent_at"] = self.sent_at
        if self.reply_to is not None:
            body["reply_to"] = self.reply_to
        if masked:
            body["masked"] = True
        if flagged:
            body["flagged"] = True
        return ENCODER.encode(body).encode("utf-8")


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Built once: json.loads/dumps with keyword arguments build a new decoder/encoder per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _string_field(obj: dict[str, Any], name: str, pattern: re.Pattern[str] | None, *, required: bool) -> Any:
    if name not in obj:
        if required:
            raise ChatInvalid(f"missing_field:{name}", f"field {name!r} is required")
        return None
    value = obj[name]
    if not required and value is None:
        return None
    if not isinstance(value, str):
        raise ChatInvalid(f"wrong_type:{name}", f"field {name!r} must be a string, got {type(value).__name__}")
    if pattern is not None and not pattern.fullmatch(value):
        raise ChatInvalid(f"invalid_value:{name}", f"field {name!r} must match {pattern.pattern}")
    return value


def parse_chat(payload: bytes, max_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> ChatMessage:
    """The chat message in `payload`, or `ChatInvalid` naming the first problem found."""
    if len(payload) > max_bytes:
        raise ChatInvalid("too_large", f"{len(payload)} bytes, limit {max_bytes}")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ChatInvalid("not_utf8", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise ChatInvalid("not_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise ChatInvalid("not_object", f"a chat message is a JSON object, got {type(obj).__name__}")
    partial = {k: obj[k] for k in ("room", "user", "msg_id") if isinstance(obj.get(k), str)}
    try:
        return _validate(obj)
    except ChatInvalid as exc:
        exc.partial = partial
        raise


def _validate(obj: dict[str, Any]) -> ChatMessage:
    version = obj.get("v", CHAT_SCHEMA_VERSION)
    if not isinstance(version, int) or isinstance(version, bool):
        raise ChatInvalid("wrong_type:v", "field 'v' must be an integer")
    if version < 1:
        raise ChatInvalid("invalid_value:v", f"schema version {version} does not exist")
    if version > CHAT_SCHEMA_VERSION:
        raise ChatInvalid("unsupported_version", f"chat schema v{version}, this function reads v1")
    room = _string_field(obj, "room", ID_PATTERN, required=True)
    user = _string_field(obj, "user", ID_PATTERN, required=True)
    msg_id = _string_field(obj, "msg_id", MSG_ID_PATTERN, required=True)
    text = _string_field(obj, "text", None, required=True)
    if not text.strip():
        raise ChatInvalid("invalid_value:text", "field 'text' is empty")
    if "sent_at" not in obj:
        raise ChatInvalid("missing_field:sent_at", "field 'sent_at' is required")
    sent_at = obj["sent_at"]
    if not _is_number(sent_at):
        raise ChatInvalid("wrong_type:sent_at", f"field 'sent_at' must be a number, got {type(sent_at).__name__}")
    try:
        finite = math.isfinite(sent_at)
    except OverflowError:  # an int too large for a float
        finite = False
    if not finite or sent_at < 0:
        raise ChatInvalid("invalid_value:sent_at", "field 'sent_at' must be ms since epoch, >= 0")
    stream = _string_field(obj, "stream", ID_PATTERN, required=False)
    reply_to = _string_field(obj, "reply_to", MSG_ID_PATTERN, required=False)
    return ChatMessage(room, user, msg_id, text, sent_at, stream, reply_to, version)
