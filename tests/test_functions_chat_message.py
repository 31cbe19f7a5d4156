"""functions/chat_message.py agrees with schemas/chat.schema.json, and chat_verdict.py with
schemas/verdict.schema.json (the functions carry their own copy of the rules: ENVELOPE.md)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.test_functions_chat_support import chat_message, load_schema

CHAT_SCHEMA = load_schema("chat.schema.json")
VERDICT_SCHEMA = load_schema("verdict.schema.json")
jsonschema.Draft202012Validator.check_schema(CHAT_SCHEMA)
jsonschema.Draft202012Validator.check_schema(VERDICT_SCHEMA)

GOOD: dict[str, Any] = {"room": "lobby", "user": "alice", "msg_id": "m-1", "text": "hi", "sent_at": 1.5}

CORPUS: list[dict[str, Any]] = [
    GOOD,
    {**GOOD, "v": 1},
    {**GOOD, "v": 2},
    {**GOOD, "v": 0},
    {**GOOD, "stream": "s1", "reply_to": "m-0"},
    {**GOOD, "stream": None, "reply_to": None},
    {**GOOD, "reply_to": "has space"},
    {**GOOD, "extra": {"nested": True}},  # unknown fields are fine
    {**GOOD, "room": ""},
    {**GOOD, "room": "../x"},
    {**GOOD, "room": "r" * 64},
    {**GOOD, "room": "r" * 65},
    {**GOOD, "user": 5},
    {**GOOD, "msg_id": "a:b.c_d-e"},
    {**GOOD, "msg_id": "m" * 129},
    {**GOOD, "text": ""},
    {**GOOD, "text": " \t"},
    {**GOOD, "text": 3},
    {**GOOD, "sent_at": -0.5},
    {**GOOD, "sent_at": "1"},
    {**GOOD, "sent_at": 0},
    {k: v for k, v in GOOD.items() if k != "text"},
    {k: v for k, v in GOOD.items() if k != "sent_at"},
]


@pytest.mark.parametrize("body", CORPUS, ids=[json.dumps(b)[:60] for b in CORPUS])
def test_function_validator_agrees_with_the_json_schema(body: dict[str, Any]) -> None:
    schema_ok = jsonschema.Draft202012Validator(CHAT_SCHEMA).is_valid(body)
    try:
        chat_message.parse_chat(json.dumps(body).encode())
        function_ok = True
    except chat_message.ChatInvalid:
        function_ok = False
    assert function_ok == schema_ok


def test_required_fields_and_patterns_match_the_schema() -> None:
    assert tuple(CHAT_SCHEMA["required"]) == chat_message.REQUIRED
    props = CHAT_SCHEMA["properties"]
    for name in ("room", "user", "stream"):
        assert props[name]["pattern"] == chat_message.ID_PATTERN.pattern
    for name in ("msg_id", "reply_to"):
        assert props[name]["pattern"] == chat_message.MSG_ID_PATTERN.pattern
    assert props["v"]["maximum"] == chat_message.CHAT_SCHEMA_VERSION


def test_approved_chat_output_matches_the_schema() -> None:
    msg = chat_message.parse_chat(json.dumps({**GOOD, "stream": "s1", "reply_to": "m-0", "junk": 1}).encode())
    body = json.loads(msg.to_json(text="h*", masked=True, flagged=True))
    jsonschema.validate(body, CHAT_SCHEMA)
    assert "junk" not in body and body["masked"] is True and body["text"] == "h*"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xc3\x28", "not_utf8"),
        (b"", "not_json"),
        (b"[" * 100_000, "too_large"),
        (b"[" * 5000 + b"]" * 5000, "not_json"),  # nesting beyond the parser's recursion limit
        (b'{"a":Infinity}', "not_json"),
        (b'"just a string"', "not_object"),
    ],
)
def test_parse_errors_name_the_problem(payload: bytes, reason: str) -> None:
    with pytest.raises(chat_message.ChatInvalid) as info:
        chat_message.parse_chat(payload)
    assert info.value.reason == reason
    assert info.value.detail


def test_too_large_is_checked_before_decoding() -> None:
    with pytest.raises(chat_message.ChatInvalid) as info:
        chat_message.parse_chat(b"\xff" * 101, max_bytes=100)
    assert info.value.reason == "too_large" and "101 bytes" in info.value.detail


def test_newline_after_an_id_is_not_accepted() -> None:
    with pytest.raises(chat_message.ChatInvalid) as info:
        chat_message.parse_chat(json.dumps({**GOOD, "room": "lobby\n"}).encode())
    assert info.value.reason == "invalid_value:room"


def test_partial_fields_survive_for_the_verdict() -> None:
    with pytest.raises(chat_message.ChatInvalid) as info:
        chat_message.parse_chat(json.dumps({**GOOD, "sent_at": "x"}).encode())
    assert info.value.partial == {"room": "lobby", "user": "alice", "msg_id": "m-1"}
