"""Chat signed by the ingress and checked by moderate (schemas/CHAT.md "Signed by the ingress"): both
sides against the document's test vector, and moderate's dead-letter for unsigned, altered or
foreign-key chat when it has the secret `chatSigningKey`."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from ingress import chat_signing
from tests.fake_context import FakeContext, Published
from tests.test_functions_chat_support import (
    APPROVED,
    CHAT_IN,
    DEAD_LETTER,
    NOW_MS,
    VERDICTS,
    by_topic,
    chat,
    chat_signature,
    moderate,
    moderate_context,
)

KEY = "k" * 16 + "0123456789abcdef"  # 32 bytes
VECTOR_KEY = b"0123456789abcdef0123456789abcdef"
VECTOR_PROPS = {"kind": "chat", "room": "lobby", "user": "alice", "stream": "chat1", "seq": "7",
                "t_ingress": "1800000000000.5"}  # fmt: skip
VECTOR_PAYLOAD = b'{"room":"lobby","user":"alice","msg_id":"m1","text":"hi","sent_at":1800000000000}'
VECTOR_SIG = "v1=da5039e07734c913094889b1e811edc84708fbbfe6882c485b9c46231893068f"


def test_both_sides_give_the_documented_vector() -> None:
    assert chat_signing.sign(VECTOR_KEY, VECTOR_PROPS, VECTOR_PAYLOAD) == VECTOR_SIG
    assert chat_signature.signature(VECTOR_KEY, VECTOR_PROPS, VECTOR_PAYLOAD) == VECTOR_SIG
    assert chat_signature.signed_bytes(VECTOR_PROPS, VECTOR_PAYLOAD).startswith(
        b"2:v15:lobby5:alice5:chat11:715:1800000000000.581:{")
    assert chat_signature.problem(VECTOR_KEY, {**VECTOR_PROPS, "chat_sig": VECTOR_SIG}, VECTOR_PAYLOAD) is None
    assert (chat_signing.PROPERTY, chat_signing.SIGNED_PROPERTIES) == (chat_signature.PROPERTY,
                                                                      chat_signature.SIGNED_PROPERTIES)


def test_fields_cannot_be_shifted_between_properties() -> None:
    a = chat_signature.signature(VECTOR_KEY, {"room": "ab", "user": "c"}, b"x")
    b = chat_signature.signature(VECTOR_KEY, {"room": "a", "user": "bc"}, b"x")
    assert a != b


def props(payload: bytes, key: str | None = KEY, **changes: str) -> dict[str, str]:
    """What the ingress stamps on a chat-in message, signed with ``key`` (None: unsigned)."""
    stamped = {"kind": "chat", "codec": "json", "room": "lobby", "user": "alice", "stream": "chat1", "seq": "3",
               "t_ingress": str(NOW_MS)}  # fmt: skip
    if key is not None:
        stamped["chat_sig"] = chat_signing.sign(key.encode(), stamped, payload)
    stamped.update(changes)
    return stamped


def feed(fn: Any, ctx: FakeContext, payload: bytes, properties: dict[str, str]) -> list[Published]:
    before = len(ctx.published)
    ctx.set_message(topic=CHAT_IN, key="lobby", properties=properties, event_time=NOW_MS)
    fn.process(payload, ctx)
    return ctx.published[before:]


def signed_context(secret: str = KEY) -> FakeContext:
    return moderate_context(secrets={"chatSigningKey": secret})


def test_signed_chat_is_moderated_as_before() -> None:
    fn, ctx = moderate.ModerateFunction(clock=lambda: NOW_MS / 1000), signed_context()
    payload = chat("hello there")
    out = feed(fn, ctx, payload, props(payload))
    assert [p.topic for p in out] == [APPROVED, VERDICTS]
    assert json.loads(out[0].payload)["text"] == "hello there"
    assert "moderate_unverified" not in ctx.metrics


@pytest.mark.parametrize(("case", "reason"), [
    ("unsigned", "unsigned"),
    ("other user", "bad_signature"),  # the signature of alice's message, re-stamped as bob's
    ("other payload", "bad_signature"),
    ("other key", "bad_signature"),
    ("other seq", "bad_signature"),
])  # fmt: skip
def test_chat_not_signed_by_the_ingress_is_dead_lettered_untouched(case: str, reason: str) -> None:
    fn, ctx = moderate.ModerateFunction(clock=lambda: NOW_MS / 1000), signed_context()
    payload = chat("hello there")
    properties = {
        "unsigned": props(payload, key=None),
        "other user": {**props(payload), "user": "mallory"},
        "other payload": props(chat("something else")),
        "other key": props(payload, key="x" * 32),
        "other seq": {**props(payload), "seq": "4"},
    }[case]
    if case == "other user":
        payload = chat("hello there", user="mallory")
    out = feed(fn, ctx, payload, properties)
    (dead,) = by_topic(out, DEAD_LETTER)
    assert dead.properties["reason"] == reason and dead.payload == payload, dead.properties
    assert "ingress" in dead.properties["detail"]
    assert dead.properties["function"] == "moderate" and dead.properties["source_topic"] == CHAT_IN
    assert not by_topic(out, APPROVED)
    (verdict,) = by_topic(out, VERDICTS)
    body = json.loads(verdict.payload)
    assert body["action"] == "drop" and body["rules"] == ["schema"] and body["reason"].startswith(reason + ":")
    assert ctx.metrics[f"moderate_dead_letter_{reason}"] == [1]


def test_without_the_secret_chat_is_counted_unverified_and_a_warning_says_so(caplog: pytest.LogCaptureFixture) -> None:
    fn, ctx = moderate.ModerateFunction(clock=lambda: NOW_MS / 1000), moderate_context()
    payload = chat("hello there")
    with caplog.at_level(logging.WARNING):
        out = feed(fn, ctx, payload, props(payload, key=None))
    assert [p.topic for p in out] == [APPROVED, VERDICTS]
    assert ctx.metrics["moderate_unverified"] == [1]
    assert any("chatSigningKey" in r.getMessage() and "NOT checked" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(("secret", "message"), [
    ("short", "secret chatSigningKey is 5 bytes; at least 32 are needed"),
    ({"path": "k8s-secret", "key": "key"}, "secret chatSigningKey must be a string"),
])  # fmt: skip
def test_an_unusable_secret_is_refused_with_its_reason(secret: Any, message: str) -> None:
    fn, ctx = moderate.ModerateFunction(), moderate_context(secrets={"chatSigningKey": secret})
    payload = chat("hello there")
    with pytest.raises(chat_signature.SigningKeyError, match=message):
        feed(fn, ctx, payload, props(payload))
    assert ctx.published == []


@pytest.mark.parametrize(("flag", "env", "message"), [
    ("short", None, "--chat-signing-key: the chat signing key is 5 bytes; at least 32 are needed"),
    (None, "tiny", r"\$WTPULSAR_CHAT_SIGNING_KEY: the chat signing key is 4 bytes"),
    ("file:///nonexistent/key", None, "chat signing key file /nonexistent/key: No such file"),
])  # fmt: skip
def test_ingress_key_errors_name_where_the_key_came_from(monkeypatch: pytest.MonkeyPatch, flag: str | None,
                                                         env: str | None, message: str) -> None:  # fmt: skip
    monkeypatch.delenv(chat_signing.ENV, raising=False)
    if env is not None:
        monkeypatch.setenv(chat_signing.ENV, env)
    with pytest.raises(ValueError, match=message):
        chat_signing.resolve_key(flag)


def test_ingress_key_from_a_file_or_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.delenv(chat_signing.ENV, raising=False)
    assert chat_signing.resolve_key(None) is None
    (tmp_path / "key").write_text(KEY + "\n")
    assert chat_signing.resolve_key(f"file://{tmp_path / 'key'}") == KEY.encode()
