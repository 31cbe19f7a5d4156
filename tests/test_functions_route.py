"""functions/route.py and routing_table.py: per room/kind/rendition/user rules, fan-out, the
unroutable topic with its reasons, hostile room names, and acks after every fan-out publish."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_context import FakeContext
from tests.test_functions_chat_support import NS, UNROUTABLE, route, routing_table

RouteFunction = route.RouteFunction
RoutingConfigError = routing_table.RoutingConfigError
RoutingTable = routing_table.RoutingTable

SEGMENTS = f"{NS}/segments"
CHAT_APPROVED = f"{NS}/chat-approved"


def route_context(user_config: dict[str, Any] | None = None, **kwargs: Any) -> FakeContext:
    return FakeContext(user_config=user_config, input_topics=[SEGMENTS, CHAT_APPROVED], function_name="route",
                       current_topic=SEGMENTS, **kwargs)  # fmt: skip


def feed(fn: Any, ctx: FakeContext, props: dict[str, str], *, topic: str = SEGMENTS, payload: bytes = b"\x00moof",
         key: str = "stream-1", event_time: int = 1_700_000_000_123) -> list[Any]:  # fmt: skip
    before = len(ctx.published)
    ctx.set_message(topic=topic, key=key, properties=props, event_time=event_time)
    fn.process(payload, ctx)
    return ctx.published[before:]


VIDEO = {"kind": "video", "room": "lobby", "rendition": "720p", "stream": "stream-1", "user": "alice", "seq": "7"}


# --- the default table: ENVELOPE.md's per-room topics -------------------------------------------


@pytest.mark.parametrize(
    ("props", "topic"),
    [
        ({**VIDEO}, "room-lobby-video-720p"),
        ({**VIDEO, "rendition": "360p"}, "room-lobby-video-360p"),
        ({**VIDEO, "kind": "screen"}, "room-lobby-screen-720p"),
        ({"kind": "audio", "room": "lobby", "codec": "opus"}, "room-lobby-audio"),
        ({"kind": "chat", "room": "lobby", "user": "bob"}, "room-lobby-chat"),
        ({"kind": "file", "room": "r_2", "chunk_index": "0"}, "room-r_2-file"),
        ({**VIDEO, "room": "Room-9"}, "room-Room-9-video-720p"),
    ],
)
def test_default_table_routes_per_room(props: dict[str, str], topic: str) -> None:
    ctx = route_context()
    out = feed(RouteFunction(clock=lambda: 1_700_000_000.5), ctx, props)
    assert [p.topic for p in out] == [f"{NS}/{topic}"]
    p = out[0]
    assert p.payload == b"\x00moof"
    assert p.key == "stream-1"
    assert p.event_timestamp == 1_700_000_000_123
    assert p.properties == {**props, "t_route": "1700000000500"}
    assert p.serde_class_name == "bytes_serde.BytesSerDe"
    assert len(ctx.acked) == 1


def test_chat_from_chat_approved_goes_to_the_room_chat_topic() -> None:
    ctx = route_context()
    out = feed(RouteFunction(), ctx, {"kind": "chat", "room": "lobby"}, topic=CHAT_APPROVED, payload=b'{"text":"1"}',
               key="lobby")  # fmt: skip
    assert [p.topic for p in out] == [f"{NS}/room-lobby-chat"]
    assert out[0].payload == b'{"text":"1"}'  # not turned into the int 1: bytes pass through
    assert ctx.acked == [(ctx.current_message_id, CHAT_APPROVED)]


MODERATION = f"{NS}/moderation"
VERDICT_PROPS = {"room": "lobby", "user": "alice", "msg_id": "alice.1", "action": "drop", "codec": "json",
                 "stream": "chat", "seq": "3", "t_ingress": "1700000000001.5", "t_moderate": "1700000000002"}
VERDICT = b'{"v":1,"msg_id":"alice.1","room":"lobby","user":"alice","action":"drop","rules":["harassment"]}'


def test_verdict_from_moderation_goes_to_the_room_verdict_topic_only() -> None:
    ctx = route_context(auto_complete_publish=False)
    out = feed(RouteFunction(clock=lambda: 1_700_000_000.5), ctx, VERDICT_PROPS, topic=MODERATION, payload=VERDICT,
               key="lobby")  # fmt: skip
    # Never the room's chat topic: a verdict is for its sender only (the ingress picks who gets it).
    assert [p.topic for p in out] == [f"{NS}/room-lobby-moderation"]
    assert out[0].payload == VERDICT and out[0].key == "lobby"
    # user, msg_id and the ingress's seq/t_ingress survive: the ingress matches the verdict with them
    assert out[0].properties == {**VERDICT_PROPS, "t_route": "1700000000500"}
    assert ctx.acked == []  # ack only in the publish callback (output_ack)
    out[0].callback("Ok", None)
    assert ctx.acked == [(ctx.current_message_id, MODERATION)]


def test_verdict_that_names_a_kind_still_goes_to_the_verdict_topic() -> None:
    ctx = route_context()
    out = feed(RouteFunction(), ctx, {**VERDICT_PROPS, "kind": "chat"}, topic=MODERATION, payload=VERDICT)
    assert [p.topic for p in out] == [f"{NS}/room-lobby-moderation"]


def test_verdict_without_a_room_is_unroutable() -> None:
    # moderate's verdict for input whose room could not be read has no room property
    ctx = route_context()
    props = {k: v for k, v in VERDICT_PROPS.items() if k != "room"}
    out = feed(RouteFunction(), ctx, props, topic=MODERATION, payload=VERDICT)
    assert [p.topic for p in out] == [UNROUTABLE]
    assert out[0].properties["reason"] == "missing_room"
    assert out[0].properties["source_topic"] == MODERATION
    assert len(ctx.acked) == 1


def test_approved_chat_never_goes_to_the_verdict_topic() -> None:
    ctx = route_context()
    out = feed(RouteFunction(), ctx, {"kind": "chat", "room": "lobby", "moderation": "mask"}, topic=CHAT_APPROVED)
    assert [p.topic for p in out] == [f"{NS}/room-lobby-chat"]


# --- custom tables -------------------------------------------------------------------------------

CUSTOM = {
    "routes": [
        {"match": {"user": "bot-*"}, "to": "bots-{kind}"},
        {"match": {"room": "vip-*", "kind": "video"}, "to": ["room-{room}-video-{rendition}", "vip-archive"],
         "continue": True},
        {"match": {"kind": "video", "rendition": "360p"}, "to": "mobile-{room}"},
        {"match": {"kind": ["video", "screen"]}, "to": "room-{room}-{kind}-{rendition}"},
        {"match": {"source": "chat-approved"}, "to": ["room-{room}-chat", "chat-firehose"]},
        {"match": {"kind": "audio"}, "to": "room-{room}-audio-{rendition}"},
    ]
}


@pytest.mark.parametrize(
    ("props", "topic", "topics"),
    [
        ({**VIDEO, "user": "bot-7"}, SEGMENTS, ["bots-video"]),  # per user (glob), first match wins
        ({**VIDEO, "user": "bot"}, SEGMENTS, ["room-lobby-video-720p"]),  # glob needs the dash
        ({**VIDEO, "room": "vip-1"}, SEGMENTS, ["room-vip-1-video-720p", "vip-archive"]),  # per room + continue
        ({**VIDEO, "room": "vip-1", "rendition": "360p"}, SEGMENTS,
         ["room-vip-1-video-360p", "vip-archive", "mobile-vip-1"]),  # continue, then per rendition
        ({**VIDEO, "rendition": "360p"}, SEGMENTS, ["mobile-lobby"]),  # per rendition
        ({**VIDEO, "kind": "screen"}, SEGMENTS, ["room-lobby-screen-720p"]),  # per kind
        ({"kind": "chat", "room": "lobby"}, CHAT_APPROVED, ["room-lobby-chat", "chat-firehose"]),  # fan-out
    ],
)
def test_custom_table(props: dict[str, str], topic: str, topics: list[str]) -> None:
    ctx = route_context(CUSTOM)
    out = feed(RouteFunction(), ctx, props, topic=topic)
    assert [p.topic for p in out] == [f"{NS}/{t}" for t in topics]
    assert all(p.payload == b"\x00moof" and p.key == "stream-1" for p in out)


def test_fanout_acks_only_after_every_publish() -> None:
    ctx = route_context(CUSTOM, auto_complete_publish=False)
    out = feed(RouteFunction(), ctx, {"kind": "chat", "room": "lobby"}, topic=CHAT_APPROVED)
    assert len(out) == 2 and ctx.acked == []
    out[1].callback("Ok", None)
    assert ctx.acked == []
    out[0].callback("Ok", None)
    assert ctx.acked == [(ctx.current_message_id, CHAT_APPROVED)]


def test_failed_fanout_publish_leaves_input_unacked() -> None:
    ctx = route_context(CUSTOM, auto_complete_publish=False)
    out = feed(RouteFunction(), ctx, {"kind": "chat", "room": "lobby"}, topic=CHAT_APPROVED)
    out[0].callback("ProducerQueueIsFull", None)
    out[1].callback("Ok", None)
    assert ctx.acked == []
    assert ctx.metrics["route_publish_failed"] == [1]


def test_tenant_and_namespace_from_user_config() -> None:
    ctx = route_context({"tenant": "acme", "namespace": "live"})
    out = feed(RouteFunction(), ctx, VIDEO)
    assert [p.topic for p in out] == ["persistent://acme/live/room-lobby-video-720p"]


# --- unroutable ---------------------------------------------------------------------------------

HOSTILE_ROOMS = ["../x", "a/b", "persistent://evil/ns/t", "r" * 65, "", "lobby\n", "a b", "ümlaut", "{kind}"]


@pytest.mark.parametrize(
    ("props", "reason"),
    [
        ({"kind": "video", "rendition": "720p"}, "missing_room"),
        ({**VIDEO, "room": ""}, "missing_room"),
        ({**VIDEO, "kind": "hologram"}, "no_rule"),
        ({**VIDEO, "rendition": None}, "missing_rendition"),  # video without rendition
        ({**VIDEO, "kind": None}, "no_rule"),
        ({**VIDEO, "user": "../../admin"}, "invalid_user"),
        ({**VIDEO, "stream": "s/1"}, "invalid_stream"),
        ({**VIDEO, "rendition": "720p/../../x"}, "invalid_rendition"),
        ({**VIDEO, "kind": "video/../x"}, "invalid_kind"),
    ],
)
def test_unroutable_reasons(props: dict[str, Any], reason: str) -> None:
    props = {k: v for k, v in props.items() if v is not None}
    ctx = route_context()
    out = feed(RouteFunction(), ctx, props)
    assert [p.topic for p in out] == [UNROUTABLE]
    assert out[0].properties["reason"] == reason
    assert out[0].properties["source_topic"] == SEGMENTS
    assert out[0].payload == b"\x00moof" and out[0].key == "stream-1"
    assert out[0].event_timestamp == 1_700_000_000_123
    assert len(ctx.acked) == 1


@pytest.mark.parametrize("room", HOSTILE_ROOMS, ids=repr)
def test_hostile_room_names_never_leave_the_namespace(room: str) -> None:
    ctx = route_context({"routes": [{"to": "room-{room}-{kind}"}]})  # matches everything
    out = feed(RouteFunction(), ctx, {**VIDEO, "room": room})
    assert [p.topic for p in out] == [UNROUTABLE]
    assert out[0].properties["reason"] in ("invalid_room", "missing_room")
    assert all(p.topic.startswith(f"{NS}/") for p in ctx.published)


def test_long_but_valid_values_produce_a_valid_topic() -> None:
    table = RoutingTable(None, "public", "wtpulsar")
    routed = table.route({**VIDEO, "room": "r" * 64, "rendition": "x" * 64}, SEGMENTS)
    assert routed.topics == (f"{NS}/room-{'r' * 64}-video-{'x' * 64}",)


def test_partitioned_input_topic_is_matched_by_its_base_name() -> None:
    table = RoutingTable([{"match": {"source": "segments"}, "to": "seg-{room}"}], "public", "wtpulsar")
    assert table.route(VIDEO, f"{SEGMENTS}-partition-3").topics == (f"{NS}/seg-lobby",)


def test_unroutable_topic_configurable() -> None:
    ctx = route_context({"unroutableTopic": f"{NS}/lost"})
    out = feed(RouteFunction(), ctx, {"kind": "video"})
    assert [p.topic for p in out] == [f"{NS}/lost"]


# --- configuration errors -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("routes", "names"),
    [
        ([{"to": "persistent://evil/ns/{room}"}], "no tenant/namespace"),
        ([{"to": "../{room}"}], "no tenant/namespace"),
        ([{"to": "room-{room.__class__}"}], "unknown placeholder"),
        ([{"to": "room-{password}"}], "unknown placeholder"),
        ([{"to": []}], "routes[0].to"),
        ([{"match": {"colour": "red"}, "to": "x"}], "unknown field 'colour'"),
        ([{"match": {"room": []}, "to": "x"}], "routes[0].match.room"),
        ([{"to": "x", "continue": "yes"}], "routes[0].continue"),
        ([{"to": "x", "priority": 1}], "unknown keys"),
        ("room-{room}", "must be a list"),
    ],
)
def test_bad_routing_table_is_rejected(routes: Any, names: str) -> None:
    ctx = route_context({"routes": routes})
    with pytest.raises(RoutingConfigError) as info:
        feed(RouteFunction(), ctx, VIDEO)
    assert names in str(info.value)
    assert ctx.published == [] and ctx.acked == []


@pytest.mark.parametrize("namespace", ["", "a/b", "../x"])
def test_bad_namespace_is_rejected(namespace: str) -> None:
    with pytest.raises(RoutingConfigError, match="namespace"):
        RoutingTable(None, "public", namespace)


HOSTILE_TEXT = st.lists(st.sampled_from(list("ab-_/.:%{}\\\n 0é") + ["persistent://", "..", "{room}", "x" * 64]),
                        max_size=12).map("".join)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["room", "kind", "rendition", "user", "stream"]), HOSTILE_TEXT))
def test_no_property_value_leaves_the_namespace(props: dict[str, str]) -> None:
    table = RoutingTable([{"to": ["room-{room}-{kind}-{rendition}", "u-{user}-{stream}"]}], "public", "wtpulsar")
    routed = table.route(props, SEGMENTS)
    for topic in routed.topics:
        name = topic.removeprefix(f"{NS}/")
        assert topic.startswith(f"{NS}/") and re.fullmatch(r"[A-Za-z0-9_-]+", name), topic
    assert bool(routed.topics) != bool(routed.reason)
