"""Chat end to end on the real stack: the official pulsar-client produces to chat-in, localrun runs
moderate and route from their deploy/ FunctionConfigs (topics renamed per test), the embedded
broker carries everything, and a viewer reads the room's chat topic."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pulsar
import pytest
import yaml

from localrun.config import source_py
from tests.localrun_harness import running, write_config
from tests.test_functions_chat_support import ROOT, chat

NS = "persistent://public/default"


def configs(tmp_path: Path, tag: str, rate_messages: int = 100) -> tuple[list[Path], dict[str, str]]:
    """moderate.yaml and route.yaml from deploy/, moved to public/default and per-test topics."""
    topics = {name: f"{NS}/{tag}-{name}" for name in ("chat-in", "chat-approved", "moderation", "dead-letter",
                                                         "unroutable")}  # fmt: skip
    moderate = yaml.safe_load((ROOT / "deploy/functions/moderate.yaml").read_text())
    moderate.update(namespace="default", name=f"moderate-{tag}", py=source_py(moderate, ROOT / "functions"),
                    inputSpecs={topics["chat-in"]: {"serdeClassName": "bytes_serde.BytesSerDe"}}, parallelism=1)  # fmt: skip
    moderate["userConfig"].update(deadLetterTopic=topics["dead-letter"], approvedTopic=topics["chat-approved"],
                                  verdictTopic=topics["moderation"])  # fmt: skip
    moderate["userConfig"]["limits"]["rate_messages"] = rate_messages
    route = yaml.safe_load((ROOT / "deploy/functions/route.yaml").read_text())
    route.update(namespace="default", name=f"route-{tag}", py=source_py(route, ROOT / "functions"),
                 inputSpecs={topics["chat-approved"]: {"serdeClassName": "bytes_serde.BytesSerDe"}}, parallelism=1)  # fmt: skip
    route["userConfig"].update(namespace="default", unroutableTopic=topics["unroutable"])
    return [write_config(tmp_path / "cfg", "moderate.yaml", **moderate),
            write_config(tmp_path / "cfg", "route.yaml", **route)], topics  # fmt: skip


def receive_all(consumer: Any, count: int, timeout_ms: int = 30_000) -> list[Any]:
    out = []
    for _ in range(count):
        msg = consumer.receive(timeout_millis=timeout_ms)
        consumer.acknowledge(msg)
        out.append(msg)
    return out


def nothing_more(consumer: Any) -> bool:
    try:
        consumer.receive(timeout_millis=500)
    except pulsar.Timeout:
        return True
    return False


@pytest.mark.parametrize("state", [True, False], ids=["state-storage", "no-state-storage"])
def test_chat_through_moderate_and_route(broker: Any, tmp_path: Path, state: bool) -> None:
    tag = f"chat{uuid.uuid4().hex[:8]}"
    room = f"room{uuid.uuid4().hex[:8]}"
    files, topics = configs(tmp_path, tag, rate_messages=3)
    client = pulsar.Client(broker.service_url, operation_timeout_seconds=30)
    try:
        sub = dict(subscription_name="viewer", initial_position=pulsar.InitialPosition.Earliest)
        room_chat = client.subscribe(f"{NS}/room-{room}-chat", **sub)
        verdicts = client.subscribe(topics["moderation"], **sub)
        dead = client.subscribe(topics["dead-letter"], **sub)
        producer = client.create_producer(topics["chat-in"])
        sent = [
            chat("hello everyone", room=room, msg_id="c1", sent_at=1_700_000_000_001),
            chat("you are a b1tch, total $h!t", room=room, msg_id="c2", sent_at=1_700_000_000_002),
            chat("see evil.example.com now", room=room, msg_id="c3", sent_at=1_700_000_000_003),
            b"{not json",
            chat("one more", room=room, msg_id="c5", sent_at=1_700_000_000_005),  # 4th valid: over the limit of 3
        ]
        with running(files, broker.service_url, tmp_path, state=state):
            for payload in sent:
                producer.send(payload, partition_key=room, event_timestamp=1_700_000_000_000,
                              properties={"user": "alice", "room": room, "kind": "chat", "codec": "json",
                                          "t_ingress": "1800000000000"})  # one rate window: deterministic
            viewed = receive_all(room_chat, 3)
            verdict_msgs = receive_all(verdicts, 5)
            dead_msgs = receive_all(dead, 1)
            assert nothing_more(room_chat)
        texts = [json.loads(m.data())["text"] for m in viewed]
        assert texts == ["hello everyone", "you are a *****, total ****", "see [link removed] now"]
        for m, expected_sent_at in zip(viewed, (1, 2, 3), strict=True):
            assert m.partition_key() == room
            assert m.event_timestamp() == 1_700_000_000_000 + expected_sent_at
            props = m.properties()
            assert props["user"] == "alice" and props["room"] == room
            assert "t_moderate" in props and "t_route" in props
        by_id = {json.loads(m.data())["msg_id"]: json.loads(m.data()) for m in verdict_msgs}
        assert by_id["c1"]["action"] == "allow"
        assert by_id["c2"]["action"] == "mask" and by_id["c2"]["rules"] == ["profanity"]
        assert by_id["c3"]["rules"] == ["link"]
        assert by_id[None]["rules"] == ["schema"] and by_id[None]["user"] == "alice"
        assert by_id["c5"]["action"] == "drop" and by_id["c5"]["rules"] == ["rate_limit"]
        assert dead_msgs[0].data() == b"{not json"
        assert dead_msgs[0].properties()["reason"] == "not_json"
        assert dead_msgs[0].properties()["source_topic"] == topics["chat-in"]
    finally:
        client.close()


def test_route_fans_segments_out_per_room_and_rendition(broker: Any, tmp_path: Path) -> None:
    tag = f"seg{uuid.uuid4().hex[:8]}"
    room = f"room{uuid.uuid4().hex[:8]}"
    segments, unroutable = f"{NS}/{tag}-segments", f"{NS}/{tag}-unroutable"
    route = yaml.safe_load((ROOT / "deploy/functions/route.yaml").read_text())
    route.update(namespace="default", name=f"route-{tag}", py=source_py(route, ROOT / "functions"),
                 inputSpecs={segments: {"serdeClassName": "bytes_serde.BytesSerDe"}}, parallelism=1)  # fmt: skip
    route["userConfig"].update(namespace="default", unroutableTopic=unroutable)
    files = [write_config(tmp_path / "cfg", "route.yaml", **route)]
    client = pulsar.Client(broker.service_url, operation_timeout_seconds=30)
    try:
        sub = dict(subscription_name="viewer", initial_position=pulsar.InitialPosition.Earliest)
        hd = client.subscribe(f"{NS}/room-{room}-video-720p", **sub)
        sd = client.subscribe(f"{NS}/room-{room}-video-360p", **sub)
        lost = client.subscribe(unroutable, **sub)
        producer = client.create_producer(segments)
        base = {"kind": "video", "room": room, "stream": "cam1", "segment_type": "media"}
        with running(files, broker.service_url, tmp_path, state=False):
            for n, rendition in enumerate(["720p", "360p", "720p"]):
                producer.send(b"\x00\x00\x00\x08moof" + bytes([n]), partition_key="cam1", event_timestamp=1000 + n,
                              properties={**base, "rendition": rendition, "segment_seq": str(n)})  # fmt: skip
            producer.send(b"evil", partition_key="cam1", properties={**base, "room": "../../admin", "rendition": "720p"})
            hd_msgs, sd_msgs, lost_msgs = receive_all(hd, 2), receive_all(sd, 1), receive_all(lost, 1)
        assert [m.properties()["segment_seq"] for m in hd_msgs] == ["0", "2"]  # order kept per stream
        assert hd_msgs[1].data() == b"\x00\x00\x00\x08moof\x02"  # bytes untouched
        assert [m.event_timestamp() for m in hd_msgs] == [1000, 1002]
        assert all(m.partition_key() == "cam1" for m in hd_msgs + sd_msgs)
        assert sd_msgs[0].properties()["segment_seq"] == "1"
        assert lost_msgs[0].properties()["reason"] == "invalid_room"
        assert lost_msgs[0].data() == b"evil"
    finally:
        client.close()
