"""transcode and chunk against the real broker with the official pulsar-client: VP8 frames are
produced like the ingress does (key, properties, event time), each function class runs in a
small consumer loop that behaves like the Pulsar Python instance (MANUAL acks, publish via
send_async with message_conf, callbacks on the client's thread), and a reader on the segments
topic gets fMP4 that PyAV plays frame for frame. localrun/ is not used here (it has its own tests).
"""

from __future__ import annotations

import time
from typing import Any

import pulsar

from tests.broker_helpers import client, unique_topic
from tests.test_functions_media_support import (
    TWO_RUNGS,
    decode_fmp4,
    frame_props,
    load_function_module,
    media_synth,
    release_idle,
)

transcode = load_function_module("transcode")
chunk = load_function_module("chunk")

N_FRAMES = 20


class ConsumerLoopContext:
    """Just the Context surface the media functions use, on a real consumer (docs/pulsar-functions.md §1.3-1.5)."""

    def __init__(self, pulsar_client: pulsar.Client, consumer: pulsar.Consumer, user_config: dict[str, Any]) -> None:
        self._client = pulsar_client
        self._consumer = consumer
        self._user_config = user_config
        self._producers: dict[str, pulsar.Producer] = {}
        self.message: pulsar.Message | None = None
        self.acked = 0
        self.metrics: dict[str, int] = {}

    def current(self) -> pulsar.Message:
        """The message being processed (the getters are only called from inside process())."""
        assert self.message is not None, "a Context getter was called outside process()"
        return self.message

    def get_message_id(self) -> Any:
        return self.current().message_id()

    def get_message_key(self) -> str:
        return self.current().partition_key()

    def get_message_eventtime(self) -> int:
        return self.current().event_timestamp()

    def get_message_properties(self) -> dict[str, str]:
        return self.current().properties()

    def get_current_message_topic_name(self) -> str:
        return self.current().topic_name()

    def get_user_config_map(self) -> dict[str, Any]:
        return self._user_config

    def get_function_tenant(self) -> str:
        return "public"

    def get_function_namespace(self) -> str:
        return "default"

    def get_function_name(self) -> str:
        return "media-test"

    def get_output_topic(self) -> str:
        # what the official ContextImpl does (it reads a FunctionDetails field that does not exist)
        raise AttributeError("output")

    def record_metric(self, name: str, value: float) -> None:
        self.metrics[name] = self.metrics.get(name, 0) + 1

    def publish(self, topic: str, message: bytes, serde_class_name: str = "", properties: Any = None,
                compression_type: Any = None, callback: Any = None, message_conf: dict[str, Any] | None = None) -> None:
        producer = self._producers.get(topic)
        if producer is None:  # like the instance: batching on, 10 ms delay, blocking when full (docs/pulsar-functions.md §1.4)
            producer = self._producers[topic] = self._client.create_producer(
                topic, batching_enabled=True, batching_max_publish_delay_ms=10, block_if_queue_full=True)
        producer.send_async(message, callback or (lambda *_: None), **(message_conf or {}))

    def ack(self, msg_id: Any, topic: str) -> None:
        self._consumer.acknowledge(msg_id)
        self.acked += 1

    def wait_acked(self, count: int) -> int:
        """Acks arrive on the client's callback thread; give them a moment (no timing asserted)."""
        deadline = time.monotonic() + 10
        while self.acked < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.acked

    def run(self, function: Any, count: int) -> None:
        for _ in range(count):
            self.message = self._consumer.receive(10_000)
            function.process(self.message.data(), self)
        for producer in self._producers.values():
            producer.flush()


def test_vp8_frames_through_broker_become_playable_fmp4(broker: Any) -> None:
    raw, encoded, segments, dead = (unique_topic(n) for n in ("raw-video", "encoded", "segments", "dead"))
    chunks = media_synth.encode_chunks(media_synth.pattern_frames(N_FRAMES), "vp8", keyint=10)
    with client(broker.service_url) as c:
        t_consumer = c.subscribe(raw, "transcode", consumer_type=pulsar.ConsumerType.KeyShared)
        c_consumer = c.subscribe(encoded, "chunk", consumer_type=pulsar.ConsumerType.KeyShared)
        viewer = c.subscribe(segments, "viewer")
        producer = c.create_producer(raw)
        for i, ch in enumerate(chunks):
            props = frame_props("cam1", "vp8", i, ch)
            producer.send(ch.data, properties=props, partition_key="cam1",
                          event_timestamp=int(float(props["capture_ts"])))

        tctx = ConsumerLoopContext(c, t_consumer, {"renditions": TWO_RUNGS[1:], "output_topic": encoded,
                                                    "deadLetterTopic": dead, "preset": "ultrafast"})
        tfn = transcode.TranscodeFunction()
        tctx.run(tfn, N_FRAMES)
        cctx = ConsumerLoopContext(c, c_consumer, {"output_topic": segments, "deadLetterTopic": dead})
        cctx.run(chunk.ChunkFunction(), N_FRAMES)

        got = []
        for _ in range(N_FRAMES + 1):
            msg = viewer.receive(10_000)
            got.append(msg)
            viewer.acknowledge(msg)
        # every input acked once its outputs landed; transcode holds a GOP's acks until the next keyframe
        # is persisted (media_gop.py): GOP 0..9 is acked, 10..19 waits until the stream is released.
        assert tctx.wait_acked(10) == 10 and cctx.wait_acked(N_FRAMES) == N_FRAMES
        release_idle(tfn, tctx)
        assert tctx.wait_acked(N_FRAMES) == N_FRAMES

    out_props = [m.properties() for m in got]
    assert [p["segment_type"] for p in out_props] == ["init"] + ["media"] * N_FRAMES
    assert {m.partition_key() for m in got} == {"cam1"}
    assert got[1].event_timestamp() == int(float(frame_props("cam1", "vp8", 0, chunks[0])["capture_ts"]))
    assert [p.get("first_seq") for p in out_props[1:]] == [str(i) for i in range(N_FRAMES)]
    frames = decode_fmp4(b"".join(m.data() for m in got))
    assert [media_synth.marker_of(f) for f in frames] == list(range(N_FRAMES))
    assert (frames[0].width, frames[0].height) == (320, 240)


def test_bad_frame_reaches_dead_letter_topic_through_broker(broker: Any) -> None:
    raw, encoded, dead = (unique_topic(n) for n in ("raw-video", "encoded", "dead"))
    with client(broker.service_url) as c:
        consumer = c.subscribe(raw, "transcode", consumer_type=pulsar.ConsumerType.KeyShared)
        dead_reader = c.subscribe(dead, "ops")
        producer = c.create_producer(raw)
        producer.send(b"\x01\x02\x03", properties=frame_props("cam9", "av1", 0, None), partition_key="cam9")
        ctx = ConsumerLoopContext(c, consumer, {"output_topic": encoded, "deadLetterTopic": dead})
        ctx.run(transcode.TranscodeFunction(), 1)
        msg = dead_reader.receive(10_000)
        assert msg.data() == b"\x01\x02\x03" and msg.partition_key() == "cam9"
        assert msg.properties()["reason"].startswith("unknown_codec")
        assert msg.properties()["source_topic"] == raw and msg.properties()["function"] == "transcode"
        assert ctx.wait_acked(1) == 1
