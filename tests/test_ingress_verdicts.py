"""Moderation verdicts back to their sender: the session core matches a verdict from
`room-<room>-moderation` to the chat frame it is about and sends a VERDICT record only to the session
that published it (FRAMING.md "Verdict"); other users never see it. Core tests, then the whole ingress
against the real broker over WebTransport and WebSocket."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import aiohttp
import pulsar

from clients.webtransport import open_webtransport
from ingress.egress import VerdictFeed
from ingress.session import CONTROL, MAX_AWAITED_VERDICTS, Limits, Publish, PublisherSession, Rejected, Send
from ingress.tokens import Claims, Role
from ingress.verdicts import VerdictWatch, verdict_topic
from ingress.viewer import Item
from schemas import framing_codec as f
from schemas.framing_codec import Kind, Verdict, VerdictAction
from tests.ingress_support import chat, ingress

NS = "persistent://public/wtpulsar/"
ROOMS_NS = "persistent://public/wtpulsar-rooms/"  # room output topics (schemas/names.py rooms_namespace)
ALICE = Claims(room="room1", user="alice", role=Role.PUBLISHER, expires_at=2e9)
BIDI = 4  # a client bidi stream id


def verdict_json(user: str, action: str = "drop", msg_id: str = "m1") -> bytes:
    return json.dumps({"v": 1, "msg_id": msg_id, "room": "room1", "user": user, "action": action,
                       "rules": ["harassment"], "reason": "harassment: blocked word (kys)", "flagged": False,
                       "decided_at": 1}).encode()  # fmt: skip


def sent_chat(core: PublisherSession, seq: int, channel: int = BIDI, bidi: bool = True) -> dict[str, str]:
    """Admit one chat frame; returns the properties it would carry on chat-in (and so on its verdict)."""
    data = f.serialize(chat(seq))
    actions = core.stream_data(channel, data, False, time.time(), bidi=bidi) if channel != CONTROL \
        else core.message(data, time.time())  # fmt: skip
    (publish,) = [a for a in actions if isinstance(a, Publish)]
    return publish.properties


def as_verdict(props: dict[str, str], action: str = "drop", **changes: str) -> dict[str, str]:
    """What moderate + route put on a verdict: the chat-in properties minus kind, plus action etc."""
    out = {k: v for k, v in props.items() if k != "kind"}
    out.update({"action": action, "codec": "json", "msg_id": "m1", "t_moderate": "1", "t_route": "2"})
    out.update(changes)
    return out


# --- the session core ----------------------------------------------------------------------------


def test_own_verdict_goes_back_on_the_chat_stream_once() -> None:
    core = PublisherSession(ALICE, Limits(), time.time())
    assert not core.chatted
    props = sent_chat(core, 5)
    assert core.chatted
    payload = verdict_json("alice")
    (send,) = core.verdict(as_verdict(props), payload)
    assert isinstance(send, Send) and send.channel == BIDI  # where the chat Ack goes
    assert f.parse(send.data) == Verdict("chat", 5, VerdictAction.DROP, payload)  # payload untouched
    assert core.verdict(as_verdict(props), payload) == []  # a redelivered verdict is not sent twice


def test_chat_sent_without_a_bidi_stream_gets_its_verdict_on_the_control_channel() -> None:
    core = PublisherSession(ALICE, Limits(), time.time())
    props = sent_chat(core, 0, channel=CONTROL)  # WebSocket: one record per message
    (send,) = core.verdict(as_verdict(props, "mask"), b"{}")
    assert isinstance(send, Send) and send.channel == CONTROL
    record = f.parse(send.data)
    assert isinstance(record, Verdict) and record.action == VerdictAction.MASK


def test_verdicts_about_someone_else_or_another_frame_yield_nothing() -> None:
    core = PublisherSession(ALICE, Limits(), time.time())
    props = sent_chat(core, 0)
    payload = verdict_json("bob")
    assert core.verdict(as_verdict(props, user="bob"), payload) == []  # same frame keys, another user
    assert core.verdict(as_verdict(props, room="room2"), payload) == []
    assert core.verdict(as_verdict(props, seq="1"), payload) == []
    assert core.verdict(as_verdict(props, t_ingress="1.5"), payload) == []  # an older session's seq 0
    assert core.verdict({}, payload) == []
    # none of those used up the wait: the real verdict still comes through
    assert len(core.verdict(as_verdict(props), verdict_json("alice"))) == 1


def test_unknown_action_is_refused_with_a_notice_not_a_crash() -> None:
    core = PublisherSession(ALICE, Limits(), time.time())
    props = sent_chat(core, 0)
    actions = core.verdict(as_verdict(props, "explode"), b"{}")
    assert isinstance(actions[0], Rejected) and actions[0].what == "bad_verdict"
    assert isinstance(actions[1], Send) and actions[1].channel == CONTROL
    notice = f.parse(actions[1].data)
    assert isinstance(notice, f.Notice) and "unusable verdict for chat frame 0" in notice.reason


def test_waits_are_bounded_and_cleared_on_close() -> None:
    core = PublisherSession(ALICE, Limits(max_inflight=10_000), time.time())
    first = sent_chat(core, 0)
    last = {}
    for seq in range(1, MAX_AWAITED_VERDICTS + 1):
        last = sent_chat(core, seq)
    assert core.verdict(as_verdict(first), b"{}") == []  # the oldest wait was forgotten
    core.close()
    assert core.verdict(as_verdict(last), b"{}") == []


def test_verdict_feed_offers_a_verdict_only_to_its_users_watchers() -> None:
    feed = VerdictFeed(hub=None, room="room1")  # type: ignore[arg-type]  # no hub: _on_item is called directly
    assert feed.short_name == verdict_topic("room1") == "room-room1-moderation"
    got: dict[str, list[bytes]] = {"alice": [], "bob": []}
    for user, received in got.items():
        def deliver(props: dict[str, str], payload: bytes, received: list[bytes] = received) -> None:
            received.append(payload)

        feed.watchers.add(VerdictWatch("room1", user, deliver))
    feed._on_item(Item(Kind.CHAT, {"user": "alice", "action": "drop"}, b"for alice"))
    feed._on_item(Item(Kind.CHAT, {"action": "drop"}, b"no user"))
    assert got == {"alice": [b"for alice"], "bob": []}


# --- the ingress with the real broker -----------------------------------------------------------


def read_chat_in(service_url: str, room: str, users: set[str]) -> dict[str, dict[str, str]]:
    """chat-in properties per user of `room` (what moderate would receive), waiting until all are there."""
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        reader = client.create_reader(NS + "chat-in", pulsar.MessageId.earliest)
        found: dict[str, dict[str, str]] = {}
        while set(found) != users:
            props = reader.read_next(10_000).properties()
            if props.get("room") == room:
                found[props["user"]] = dict(props)
        return found
    finally:
        client.close()


def produce(service_url: str, short: str, items: list[tuple[dict[str, str], bytes]]) -> None:
    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
    try:
        producer = client.create_producer(ROOMS_NS + short, batching_enabled=False)
        for props, payload in items:
            producer.send(payload, properties=props, partition_key=props["room"])
        producer.close()
    finally:
        client.close()


def test_verdict_reaches_only_the_sender_over_webtransport_and_websocket(broker, tmp_path) -> None:
    room = "r" + uuid.uuid4().hex[:10]
    alice_payload, bob_payload = verdict_json("alice", "drop", "a.1"), verdict_json("bob", "mask", "b.1")

    async def main() -> tuple[list[tuple[int, Any]], int, list[Any]]:
        async with ingress(tmp_path, broker_service_url=broker.service_url) as h:
            url = f"{h.wt_url}?token={h.issue_token(room, 'alice', 'publisher')}"
            ws_url = h.http_url.replace("http://", "ws://") + f"/ws?token={h.issue_token(room, 'bob', 'publisher')}"
            async with open_webtransport(url) as alice, aiohttp.ClientSession() as http:
                async with http.ws_connect(ws_url) as bob:
                    talk = alice.open_stream(unidirectional=False)
                    alice.send(talk, f.serialize(chat(0, "please kys")))
                    await bob.send_bytes(f.serialize(chat(0, "hello")))  # same stream id and seq as alice's
                    bob_records = [f.parse(await bob.receive_bytes(timeout=20))]  # bob's Ack
                    await alice.wait_for(lambda s: any(isinstance(r, f.Ack) for _, r in s.records), 20)
                    props = await asyncio.to_thread(read_chat_in, broker.service_url, room, {"alice", "bob"})
                    # moderate + route, played by the test: alice's verdict first, then bob's
                    await asyncio.to_thread(produce, broker.service_url, verdict_topic(room), [
                        (as_verdict(props["alice"], "drop", msg_id="a.1"), alice_payload),
                        (as_verdict(props["bob"], "mask", msg_id="b.1"), bob_payload),
                    ])  # fmt: skip
                    bob_records.append(f.parse(await bob.receive_bytes(timeout=20)))
                    await alice.wait_for(lambda s: any(isinstance(r, Verdict) for _, r in s.records), 20)
                    await asyncio.sleep(0.3)  # anything else (a wrongly routed verdict) would arrive now
                    return alice.state.records, talk, bob_records

    alice_records, talk, bob_records = asyncio.run(asyncio.wait_for(main(), 90))
    alice_verdicts = [(sid, r) for sid, r in alice_records if isinstance(r, Verdict)]
    assert alice_verdicts == [(talk, Verdict("chat", 0, VerdictAction.DROP, alice_payload))]
    # bob got his Ack and then exactly his own verdict, not alice's (which came first on the topic)
    assert isinstance(bob_records[0], f.Ack) and bob_records[0].status == f.AckStatus.OK
    assert bob_records[1] == Verdict("chat", 0, VerdictAction.MASK, bob_payload)
