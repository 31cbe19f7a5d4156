"""Unbatched outputs (docs/immediate-publish.md) under localrun on the embedded broker: transcode, chunk and route (deploy/functions/*.yaml,
unchanged) send every output unbatched, straight away, and still ack their inputs; with userConfig
`immediate_publish: false` the same route batches again (context.publish, today's behaviour)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pulsar
import yaml

from localrun.config import source_py
from localrun.supervisor import run_functions
from tests.broker_helpers import admin, client
from tests.test_functions_media_support import RAW_VIDEO, frame_props, media_synth
from tests.test_pipeline_localrun import wait_for_consumers

REPO = Path(__file__).resolve().parents[1]
NS = "persistent://public/wtpulsar/"
ROOM_TOPIC = "persistent://public/wtpulsar-rooms/room-room1-video-360p"


def read_all(reader: Any, want: int, timeout: float = 90) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(reader.read_next(1000))
        except pulsar.Timeout:
            continue
    return got


def backlog(admin_url: str, topic: str) -> int:
    status, stats = admin(admin_url, "GET", f"/admin/v2/persistent/public/wtpulsar/{topic}/stats")
    assert status == 200, stats
    return sum(int(sub.get("msgBacklog", 0)) for sub in stats["subscriptions"].values())


def test_media_path_outputs_leave_unbatched_and_inputs_are_acked(broker_factory, tmp_path: Path) -> None:
    broker = broker_factory()
    configs = [REPO / "deploy" / "functions" / f"{name}.yaml" for name in ("transcode", "chunk", "route")]
    supervisor = run_functions(configs, broker.service_url, str(tmp_path / "state"), nack_delay_ms=500,
                               run_dir=str(tmp_path / "run"),
                               py_overrides={c: source_py(c, REPO / "functions") for c in configs})
    try:
        for topic in ("raw-video", "encoded", "segments"):
            wait_for_consumers(broker.admin_url, topic)
        with client(broker.service_url, operation_timeout_seconds=30) as c:
            readers = {t: c.create_reader(NS + t if "://" not in t else t, pulsar.MessageId.earliest)
                       for t in ("encoded", "segments", ROOM_TOPIC)}
            producer = c.create_producer(RAW_VIDEO, batching_enabled=False, block_if_queue_full=True)
            frames = media_synth.pattern_frames(30)
            for seq, chunk in enumerate(media_synth.encode_chunks(frames, "h264", keyint=15)):
                props = frame_props("cam", "h264", seq, chunk)
                producer.send(chunk.data, properties=props, partition_key="cam", event_timestamp=int(props["capture_ts"]))
            encoded = read_all(readers["encoded"], 30)
            segments = read_all(readers["segments"], 3)
            room = read_all(readers[ROOM_TOPIC], 3)
            assert len(encoded) >= 20 and segments and room, (len(encoded), len(segments), len(room))
            for name, msgs in (("encoded", encoded), ("segments", segments), ("room", room)):
                assert {m.message_id().batch_index() for m in msgs} == {-1}, f"{name}: batched output"
            # ack after store still holds: what was published is acked; transcode keeps the last GOP (15
            # frames) unacked until the stream's next keyframe, chunk its open fragment (docs/real-pulsar.md §8)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and (backlog(broker.admin_url, "raw-video") > 15 or
                                                   backlog(broker.admin_url, "encoded") > 15):
                time.sleep(0.3)
            assert backlog(broker.admin_url, "raw-video") <= 15
            assert backlog(broker.admin_url, "encoded") <= 15
    finally:
        supervisor.stop()


def test_immediate_publish_off_batches_like_context_publish(broker_factory, tmp_path: Path) -> None:
    broker = broker_factory()
    data = yaml.safe_load((REPO / "deploy" / "functions" / "route.yaml").read_text())
    data.setdefault("userConfig", {})["immediate_publish"] = False
    config = tmp_path / "route.yaml"
    config.write_text(yaml.safe_dump(data))
    supervisor = run_functions([config], broker.service_url, str(tmp_path / "state"), nack_delay_ms=500,
                               run_dir=str(tmp_path / "run"),
                               py_overrides={config: source_py(config, REPO / "functions")})
    try:
        wait_for_consumers(broker.admin_url, "segments")
        with client(broker.service_url, operation_timeout_seconds=30) as c:
            reader = c.create_reader(ROOM_TOPIC, pulsar.MessageId.earliest)
            producer = c.create_producer(NS + "segments", batching_enabled=False)
            props = {"kind": "video", "room": "room1", "rendition": "360p", "stream": "cam", "user": "u",
                     "seq": "0", "segment_type": "media", "segment_seq": "0"}
            producer.send(b"\x00moof", properties=props, partition_key="cam")
            msgs = read_all(reader, 1, timeout=30)
            assert msgs and msgs[0].message_id().batch_index() >= 0  # a batch (of one), as Pulsar's instance sends
    finally:
        supervisor.stop()
