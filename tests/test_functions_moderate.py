"""functions/moderate.py through the in-memory Context: the chat table (evasions, Scunthorpe-type
false positives, every action), rate limit and duplicates with and without state storage, the
dead-letter path for each kind of bad input, and acks only after the publish callbacks."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from tests.fake_context import FakeContext
from tests.test_functions_chat_support import (
    APPROVED,
    CHAT_IN,
    DEAD_LETTER,
    NOW_MS,
    VERDICTS,
    by_topic,
    chat,
    chat_config,
    load_schema,
    moderate,
    moderate_context,
    send,
    verdict_of,
)

ModerateFunction = moderate.ModerateFunction
ModerationConfigError = chat_config.ModerationConfigError

CHAT_SCHEMA = load_schema("chat.schema.json")
VERDICT_SCHEMA = load_schema("verdict.schema.json")

TABLE_CONFIG: dict[str, Any] = {
    "blocklist": {
        "profanity": ["bad", "ass", "shit", "cunt", "fuck*"],
        "slurs": ["slurx"],  # a stand-in word: the action, not the vocabulary, is under test
        "spam": ["*viagra*"],
    },
    "actions": {"profanity": "mask", "slurs": "drop", "spam": "flag"},
    "links": {"policy": "allowlist", "allowed_domains": ["example.com"]},
    "limits": {"max_text_chars": 200, "rate_messages": 1000, "duplicate_max": 1000},
}

# (text, action, rules hit, text published on chat-approved: None = dropped, ... = unchanged)
CASES: list[tuple[str, str, list[str], Any]] = [
    # clean messages, including Scunthorpe-type words that contain a blocked word
    ("hello there", "allow", [], ...),
    ("Scunthorpe United won again", "allow", [], ...),
    ("a classic assassin in the grass", "allow", [], ...),
    ("as I said, pass the glass", "allow", [], ...),
    ("hello shell, shitake mushrooms", "allow", [], ...),
    ("badge and badminton", "allow", [], ...),
    ("the embassy is on bass street", "allow", [], ...),
    ("I scored 455 points, 5 4 5 5 in a row", "allow", [], ...),
    ("e.g. a, b, c are letters", "allow", [], ...),
    ("Привет, как дела?", "allow", [], ...),
    ("Ünïcödé façade, naïve café", "allow", [], ...),
    ("version 1.2.3 released", "allow", [], ...),
    ("🎉🎉 gg wp", "allow", [], ...),
    ("see https://example.com/page and docs.example.com", "allow", [], ...),
    # each evasion technique alone
    ("you are bad", "mask", ["profanity"], "you are ***"),
    ("BAD", "mask", ["profanity"], "***"),
    ("BÄD", "mask", ["profanity"], "***"),
    ("b4d", "mask", ["profanity"], "***"),
    ("b@d", "mask", ["profanity"], "***"),
    ("sh1t", "mask", ["profanity"], "****"),
    ("$h!t happens", "mask", ["profanity"], "**** happens"),
    ("Ｂａｄ", "mask", ["profanity"], "***"),
    ("b\u0430d", "mask", ["profanity"], "***"),  # Cyrillic а
    ("\u0392AD", "mask", ["profanity"], "***"),  # Greek capital beta
    ("b.a.d", "mask", ["profanity"], "*****"),
    ("b a d", "mask", ["profanity"], "* * *"),
    ("b-a-d!", "mask", ["profanity"], "*****!"),
    ("baaaaad", "mask", ["profanity"], "*******"),
    ("b\u200bad", "mask", ["profanity"], "***"),  # zero-width space
    ("b\u0337a\u0337d\u0337", "mask", ["profanity"], "***"),  # combining overlay marks
    ("\U0001d41b\U0001d41a\U0001d41d", "mask", ["profanity"], "***"),  # mathematical bold
    ("@ss", "mask", ["profanity"], "***"),
    ("asses and bads", "mask", ["profanity"], "***** and ****"),
    ("fuckwit", "mask", ["profanity"], "*******"),
    # combinations
    ("B 4 Ä D", "mask", ["profanity"], "* * * *"),
    ("ｓ.\u04ba.1.ｔ", "mask", ["profanity"], "*******"),  # fullwidth + Cyrillic Һ + leet + dots
    ("Fuuuuck this", "mask", ["profanity"], "******* this"),
    ("baaad!!! really", "mask", ["profanity"], "*****!!! really"),
    ("I a m b a d", "mask", ["profanity"], "I a m * * *"),
    ("C U N T", "mask", ["profanity"], "* * * *"),
    # drop and flag actions
    ("slurx", "drop", ["slurs"], None),
    ("you s-l-u-r-x", "drop", ["slurs"], None),
    ("cheap viagra here", "flag", ["spam"], ...),
    ("buyviagranow", "flag", ["spam"], ...),
    ("bad viagra", "mask", ["profanity", "spam"], "*** viagra"),
    ("bad slurx", "drop", ["profanity", "slurs"], None),
    # link policy (allowlist: example.com), default action mask
    # a masked link reads as a removed link, not as stars a reader takes for a swear word
    ("go to evil.com now", "mask", ["link"], "go to [link removed] now"),
    ("https://example.com@evil.com/x", "mask", ["link"], "[link removed]"),
    ("ｅｖｉｌ．ｃｏｍ", "mask", ["link"], "[link removed]"),
    ("example.com.evil.net", "mask", ["link"], "[link removed]"),
    # length limit (200), default action drop
    ("x" * 201, "drop", ["length"], None),
]


def test_table_has_at_least_40_cases() -> None:
    assert len(CASES) >= 40


@pytest.mark.parametrize(("text", "action", "rules", "published_text"), CASES, ids=[c[0][:24] for c in CASES])
def test_chat_table(text: str, action: str, rules: list[str], published_text: Any) -> None:
    ctx = moderate_context(TABLE_CONFIG)
    out = send(ModerateFunction(clock=lambda: NOW_MS / 1000), ctx, chat(text))
    verdict = verdict_of(out)
    jsonschema.validate(verdict, VERDICT_SCHEMA)
    assert (verdict["action"], verdict["rules"]) == (action, rules), verdict["reason"]
    assert verdict["msg_id"] == "m1" and verdict["user"] == "alice" and verdict["room"] == "lobby"
    approved = by_topic(out, APPROVED)
    if published_text is None:
        assert approved == []
        assert verdict["reason"]
        return
    assert len(approved) == 1
    body = json.loads(approved[0].payload)
    jsonschema.validate(body, CHAT_SCHEMA)
    expected = text if published_text is ... else published_text
    assert body["text"] == expected
    assert body.get("masked", False) == (action == "mask")
    assert body.get("flagged", False) == ("spam" in rules)
    if action == "mask":
        assert verdict["masked_text"] == expected
    assert len(ctx.acked) == 1


def test_outputs_keyed_by_room_with_event_time_properties_and_bytes_serde() -> None:
    ctx = moderate_context(TABLE_CONFIG)
    out = send(ModerateFunction(clock=lambda: (NOW_MS + 5) / 1000), ctx,
               chat("hi all", sent_at=NOW_MS - 40, stream="s1"))  # fmt: skip
    assert [p.topic for p in out] == [APPROVED, VERDICTS]
    for p in out:
        assert p.key == "lobby"
        assert p.event_timestamp == NOW_MS - 40
        assert p.serde_class_name == "bytes_serde.BytesSerDe"
        assert p.properties["t_ingress"] == str(NOW_MS)
        assert p.properties["t_moderate"] == str(NOW_MS + 5)
        assert p.properties["msg_id"] == "m1" and p.properties["user"] == "alice"
        assert p.properties["stream"] == "s1"
    assert out[0].properties["kind"] == "chat" and out[0].properties["codec"] == "json"
    assert out[1].properties["action"] == "allow"


# --- each action per rule --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule_action", "text", "action", "published"),
    [
        ("drop", "go to evil.com", "drop", None),
        ("flag", "go to evil.com", "flag", "go to evil.com"),
        ("mask", "go to evil.com", "mask", "go to [link removed]"),
        ("allow", "go to evil.com", "allow", "go to evil.com"),
    ],
)
def test_link_rule_actions(rule_action: str, text: str, action: str, published: str | None) -> None:
    ctx = moderate_context({"links": {"policy": "block"}, "actions": {"link": rule_action}})
    out = send(ModerateFunction(), ctx, chat(text))
    assert verdict_of(out)["action"] == action
    approved = by_topic(out, APPROVED)
    assert [json.loads(p.payload)["text"] for p in approved] == ([] if published is None else [published])


@pytest.mark.parametrize(
    ("policy", "text", "hit"),
    [
        ("allow", "see evil.com", False),
        ("block", "see example.com", True),
        ("block", "no link here. Really.", False),
        ("allowlist", "see www.example.com/x", False),
        ("allowlist", "see evilexample.com", True),
        ("allowlist", "mail me at bob@example.org", False),
    ],
)
def test_link_policies(policy: str, text: str, hit: bool) -> None:
    ctx = moderate_context({"links": {"policy": policy, "allowed_domains": ["example.com"]}})
    verdict = verdict_of(send(ModerateFunction(), ctx, chat(text)))
    assert ("link" in verdict["rules"]) is hit


def test_length_mask_truncates_and_flag_passes() -> None:
    ctx = moderate_context({"limits": {"max_text_chars": 10}, "actions": {"length": "mask"}})
    out = send(ModerateFunction(), ctx, chat("0123456789abcdef"))
    assert verdict_of(out)["action"] == "mask"
    assert json.loads(by_topic(out, APPROVED)[0].payload)["text"] == "0123456789"
    ctx = moderate_context({"limits": {"max_text_chars": 10}, "actions": {"length": "flag"}})
    out = send(ModerateFunction(), ctx, chat("0123456789abcdef"))
    assert verdict_of(out)["action"] == "flag"
    assert json.loads(by_topic(out, APPROVED)[0].payload)["text"] == "0123456789abcdef"


# --- rate limit and duplicates, with and without state storage -------------------------------

LIMITS = {"limits": {"rate_messages": 3, "rate_window_ms": 10_000, "duplicate_max": 2, "duplicate_window_ms": 30_000}}


@pytest.mark.parametrize("state_enabled", [True, False])
def test_rate_limit_per_user(state_enabled: bool) -> None:
    ctx = moderate_context(LIMITS, state_enabled=state_enabled)
    fn = ModerateFunction()
    actions = [verdict_of(send(fn, ctx, chat(f"message {n}", msg_id=f"m{n}"), t_ingress=NOW_MS + n))["action"]
               for n in range(5)]  # fmt: skip
    assert actions == ["allow", "allow", "allow", "drop", "drop"]
    assert fn.state_mode == ("state" if state_enabled else "memory")
    # another user is not limited by alice's messages
    other = send(fn, ctx, chat("hi", user="bob"), user="bob", t_ingress=NOW_MS + 6)
    assert verdict_of(other)["action"] == "allow"
    # the next window starts afresh
    later = send(fn, ctx, chat("back again", msg_id="m9"), t_ingress=NOW_MS + 10_010)
    assert verdict_of(later)["action"] == "allow"
    if state_enabled:
        assert ctx.counters[f"rate:alice:{(NOW_MS + 10_010) // 10_000}"] == 1
        assert f"rate:alice:{NOW_MS // 10_000}" not in ctx.counters  # previous window cleaned up
    else:
        assert ctx.counters == {} and ctx.state == {}


@pytest.mark.parametrize("state_enabled", [True, False])
def test_duplicate_detection(state_enabled: bool) -> None:
    ctx = moderate_context(LIMITS, state_enabled=state_enabled)
    fn = ModerateFunction()
    texts = ["Buy gold now", "buy   GOLD now!", "BUY GOLD NOW", "something else", "buy gold now"]
    verdicts = [verdict_of(send(fn, ctx, chat(t, msg_id=f"m{n}"), t_ingress=NOW_MS + n * 4000))
                for n, t in enumerate(texts)]  # fmt: skip
    assert [v["action"] for v in verdicts] == ["allow", "allow", "drop", "allow", "drop"]
    assert verdicts[2]["rules"] == ["duplicate"]
    assert "3 times" in verdicts[2]["reason"]
    assert ("recent:alice" in ctx.state) is state_enabled
    # after the window the same text is fine again
    late = send(fn, ctx, chat("buy gold now", msg_id="m9"), t_ingress=NOW_MS + 60_000)
    assert verdict_of(late)["action"] == "allow"


def test_state_probe_runs_once() -> None:
    ctx = moderate_context(LIMITS)
    fn = ModerateFunction()
    for n in range(3):
        send(fn, ctx, chat(f"m {n}", msg_id=f"m{n}"))
    assert ctx.counters["wtpulsar:state-probe"] == 1


def test_state_memory_setting_skips_the_state_api() -> None:
    ctx = moderate_context({**LIMITS, "state": "memory"})
    fn = ModerateFunction()
    send(fn, ctx, chat("hi"))
    assert fn.state_mode == "memory" and ctx.counters == {}


class FailingStateContext(FakeContext):
    """State storage that works for the probe, then stops answering."""

    def get_counter(self, key: str) -> int | None:
        if key.startswith("rate:"):
            raise ConnectionError("bookkeeper table service unreachable")
        return super().get_counter(key)


def test_state_failure_falls_back_to_memory_without_losing_the_message() -> None:
    ctx = FailingStateContext(user_config=LIMITS, input_topics=[CHAT_IN], current_topic=CHAT_IN)
    fn = ModerateFunction()
    out = send(fn, ctx, chat("hello"))
    assert verdict_of(out)["action"] == "allow"
    assert fn.state_mode == "memory"
    assert ctx.metrics["moderate_state_fallback"] == [1]
    assert len(ctx.acked) == 1
    actions = [verdict_of(send(fn, ctx, chat(f"n{n}", msg_id=f"m{n}")))["action"] for n in range(3)]
    assert actions == ["allow", "allow", "drop"]  # the memory counters took over (limit 3)


# --- bad input: dead letter + drop verdict, each with its own reason --------------------------

BAD_INPUTS: list[tuple[str, bytes, str]] = [
    ("not utf-8", b"\xff\xfe{}", "not_utf8"),
    ("not json", b"{\"room\": ", "not_json"),
    ("json NaN", b'{"room":"lobby","user":"alice","msg_id":"m1","text":"x","sent_at":NaN}', "not_json"),
    ("huge", chat("x" * 20_000), "too_large"),
    ("array", b"[1, 2]", "not_object"),
    ("number", b"42", "not_object"),
    ("missing room", json.dumps({"user": "alice", "msg_id": "m1", "text": "x", "sent_at": 1}).encode(),
     "missing_field:room"),
    ("missing user", json.dumps({"room": "lobby", "msg_id": "m1", "text": "x", "sent_at": 1}).encode(),
     "missing_field:user"),
    ("missing msg_id", json.dumps({"room": "lobby", "user": "alice", "text": "x", "sent_at": 1}).encode(),
     "missing_field:msg_id"),
    ("missing text", json.dumps({"room": "lobby", "user": "alice", "msg_id": "m1", "sent_at": 1}).encode(),
     "missing_field:text"),
    ("missing sent_at", json.dumps({"room": "lobby", "user": "alice", "msg_id": "m1", "text": "x"}).encode(),
     "missing_field:sent_at"),
    ("room not a string", chat(room=7), "wrong_type:room"),  # type: ignore[arg-type]  # wrong JSON type on purpose
    ("text not a string", chat(text=["x"]), "wrong_type:text"),  # type: ignore[arg-type]  # wrong JSON type on purpose
    ("sent_at a string", chat(sent_at="now"), "wrong_type:sent_at"),  # type: ignore[arg-type]  # wrong JSON type on purpose
    ("sent_at a bool", chat(sent_at=True), "wrong_type:sent_at"),
    ("sent_at negative", chat(sent_at=-1), "invalid_value:sent_at"),
    ("sent_at enormous", b'{"room":"lobby","user":"alice","msg_id":"m1","text":"x","sent_at":1' + b"0" * 400 + b"}",
     "invalid_value:sent_at"),
    ("room traversal", chat(room="../x"), "invalid_value:room"),
    ("msg_id too long", chat(msg_id="m" * 129), "invalid_value:msg_id"),
    ("empty text", chat(text="   "), "invalid_value:text"),
    ("reply_to wrong type", chat(reply_to=5), "wrong_type:reply_to"),
    ("newer major version", chat(v=2), "unsupported_version"),
    ("version not int", chat(v="1"), "wrong_type:v"),
    ("impersonation", chat(user="mallory"), "user_mismatch"),
    ("other room", chat(room="elsewhere"), "room_mismatch"),
]


@pytest.mark.parametrize(("name", "payload", "reason"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_goes_to_dead_letter_with_reason(name: str, payload: bytes, reason: str) -> None:
    ctx = moderate_context()
    out = send(ModerateFunction(), ctx, payload)
    dead = by_topic(out, DEAD_LETTER)
    assert len(dead) == 1
    assert dead[0].payload == payload  # untouched: nothing lost
    assert dead[0].properties["reason"] == reason
    assert dead[0].properties["function"] == "moderate"
    assert dead[0].properties["source_topic"] == CHAT_IN
    assert dead[0].properties["detail"]
    assert dead[0].key == "lobby"
    verdict = verdict_of(out)
    jsonschema.validate(verdict, VERDICT_SCHEMA)
    assert verdict["action"] == "drop" and verdict["rules"] == ["schema"]
    assert verdict["reason"].startswith(reason + ": ")
    assert verdict["user"] == "alice"  # the ingress's stamp: the sender can be told
    assert by_topic(out, APPROVED) == []
    assert len(ctx.acked) == 1
    assert ctx.metrics["moderate_dead_letter"] == [1]
    assert ctx.metrics[f"moderate_dead_letter_{reason.split(':')[0]}"] == [1]


def test_rejected_message_keeps_msg_id_for_the_sender() -> None:
    out = send(ModerateFunction(), moderate_context(), chat(sent_at="yesterday", msg_id="c-42"))  # type: ignore[arg-type]  # wrong JSON type on purpose
    assert verdict_of(out)["msg_id"] == "c-42"


def test_str_input_from_identity_serde_is_still_moderated() -> None:
    ctx = moderate_context()
    ctx.set_message(topic=CHAT_IN, key="lobby", properties={"user": "alice", "room": "lobby"})
    ModerateFunction().process(chat("plain text").decode(), ctx)
    assert json.loads(ctx.published_to("/moderation")[0].payload)["action"] == "allow"


# --- acks only after the publish callbacks --------------------------------------------------


def test_ack_only_after_every_callback_succeeded() -> None:
    ctx = moderate_context(auto_complete_publish=False)
    send(ModerateFunction(), ctx, chat("hello"))
    assert [p.topic for p in ctx.published] == [APPROVED, VERDICTS]
    assert ctx.acked == []
    ctx.published[1].complete("Ok", None)  # the verdict lands first
    assert ctx.acked == []
    ctx.published[0].complete("Ok", None)
    assert ctx.acked == [(ctx.current_message_id, CHAT_IN)]


def test_ack_refers_to_the_input_even_after_the_context_moved_on() -> None:
    ctx = moderate_context(auto_complete_publish=False)
    fn = ModerateFunction()
    send(fn, ctx, chat("first", msg_id="a"))
    first_id = ctx.current_message_id
    send(fn, ctx, chat("second", msg_id="b"))
    for p in ctx.published[:2]:
        p.complete("Ok", None)
    assert ctx.acked == [(first_id, CHAT_IN)]


def test_failed_publish_leaves_input_unacked() -> None:
    ctx = moderate_context(auto_complete_publish=False)
    send(ModerateFunction(), ctx, chat("hello"))
    ctx.published[0].complete("Timeout", None)
    ctx.published[1].complete("Ok", None)
    assert ctx.acked == []
    assert ctx.metrics["moderate_publish_failed"] == [1]


def test_dead_letter_ack_waits_for_both_publishes() -> None:
    ctx = moderate_context(auto_complete_publish=False)
    send(ModerateFunction(), ctx, b"not json")
    assert [p.topic for p in ctx.published] == [DEAD_LETTER, VERDICTS]
    ctx.published[0].complete("Ok", None)
    assert ctx.acked == []
    ctx.published[1].complete("Ok", None)
    assert len(ctx.acked) == 1


# --- configuration errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"actions": {"profanity": "mask"}}, "unknown rule 'profanity'"),
        ({"blocklist": {"p": ["bad"]}, "actions": {"p": "explode"}}, "userConfig.actions.p"),
        ({"actions": {"rate_limit": "mask"}}, "rate_limit"),
        ({"blocklist": {"p": ["two words"]}}, "two words"),
        ({"blocklist": {"Bad Rule": ["x"]}}, "Bad Rule"),
        ({"blocklist": {"length": ["x"]}}, "reserved"),
        ({"limits": {"rate_messages": 0}}, "limits.rate_messages"),
        ({"limits": {"max_text_chars": "500"}}, "limits.max_text_chars"),
        ({"limits": {"per_hour": 3}}, "per_hour"),
        ({"links": {"policy": "maybe"}}, "links.policy"),
        ({"deadLetterTopic": "dead-letter"}, "deadLetterTopic"),
        ({"state": "bookkeeper"}, "userConfig.state"),
    ],
)
def test_bad_config_fails_loudly_and_publishes_nothing(config: dict[str, Any], names: str) -> None:
    ctx = moderate_context(config)
    with pytest.raises(ModerationConfigError, match=names.replace(".", r"\.").replace("'", ".")):
        send(ModerateFunction(), ctx, chat("hello"))
    assert ctx.published == [] and ctx.acked == []


def test_no_user_config_uses_defaults_under_the_function_namespace() -> None:
    ctx = moderate_context(None, tenant="acme", namespace="live")
    out = send(ModerateFunction(), ctx, b"{")
    assert [p.topic for p in out] == ["persistent://acme/live/dead-letter", "persistent://acme/live/moderation"]


def test_message_dropped_by_a_cheap_rule_is_not_scanned() -> None:
    ctx = moderate_context({**TABLE_CONFIG, "limits": {"max_text_chars": 20}})
    out = send(ModerateFunction(), ctx, chat("bad " * 1000))
    verdict = verdict_of(out)
    assert (verdict["action"], verdict["rules"]) == ("drop", ["length"])
    out = send(ModerateFunction(), ctx, chat("bad"))
    assert verdict_of(out)["rules"] == ["profanity"]


def test_a_masked_link_becomes_a_placeholder_and_a_word_inside_it_is_not_starred_twice() -> None:
    from tests.test_functions_media_support import function_module

    moderator = function_module("chat_moderator")
    text = "ugh shit see evil.com/shit\u200b now"
    link = (text.index("evil"), text.index("\u200b") - 1)
    words = [(4, 7), (text.rindex("shit"), text.rindex("shit") + 3)]
    assert moderator.mask(text, words, [link]) == "ugh **** see [link removed] now"
    assert moderator.mask(text, words) == "ugh **** see evil.com/**** now"  # no link rule: words only
