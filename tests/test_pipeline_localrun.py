"""The media pipeline as users run it: transcode, chunk and route from deploy/functions/*.yaml under
localrun, against the broker. Raw H.264 and VP8 frames go in the way the ingress writes them; the
room's output topic must hold playable fragmented MP4 that PyAV decodes frame for frame, in order."""

from __future__ import annotations

import os
import time
from collections import defaultdict
from pathlib import Path

import pulsar

from localrun.config import source_py
from localrun.supervisor import run_functions
from tests.broker_helpers import admin, client
from tests.test_functions_media_support import RAW_VIDEO, decode_fmp4, frame_props, media_synth

REPO = Path(__file__).resolve().parents[1]
FRAMES = 45
STREAMS = {"cam-h264": "h264", "cam-vp8": "vp8"}


def wait_for_consumers(admin_url: str, topic: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, stats = admin(admin_url, "GET", f"/admin/v2/persistent/public/wtpulsar/{topic}/stats")
        if status == 200 and any(sub["consumers"] for sub in stats["subscriptions"].values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no function subscribed to {topic} within {timeout:.0f} s")


def test_raw_frames_become_playable_fmp4_on_the_room_topic(broker_factory, tmp_path: Path) -> None:
    broker = broker_factory()
    configs = [REPO / "deploy" / "functions" / f"{name}.yaml" for name in ("transcode", "chunk", "route")]
    # The YAMLs name the deployable archives; run the source, as `wtpulsar up` does (--py).
    from_source: dict[str | os.PathLike[str], str | os.PathLike[str]] = {
        config: source_py(config, REPO / "functions") for config in configs}
    supervisor = run_functions(configs, broker.service_url, str(tmp_path / "state"), nack_delay_ms=500,
                               run_dir=str(tmp_path / "run"), py_overrides=from_source)
    try:
        # transcode and chunk subscribe at the latest position (Pulsar's default): wait for them.
        for topic in ("raw-video", "encoded", "segments"):
            wait_for_consumers(broker.admin_url, topic)
        with client(broker.service_url, operation_timeout_seconds=30) as c:
            output = c.create_reader("persistent://public/wtpulsar-rooms/room-room1-video-360p", pulsar.MessageId.earliest)
            producer = c.create_producer(RAW_VIDEO, batching_enabled=False, block_if_queue_full=True)
            frames = media_synth.pattern_frames(FRAMES)
            for stream, codec in STREAMS.items():
                for seq, chunk in enumerate(media_synth.encode_chunks(frames, codec, keyint=15)):
                    props = frame_props(stream, codec, seq, chunk)
                    producer.send(chunk.data, properties=props, partition_key=stream, event_timestamp=int(props["capture_ts"]))
            segments: dict[str, list[tuple[dict[str, str], bytes]]] = defaultdict(list)
            done: set[str] = set()
            deadline = time.monotonic() + 90
            while len(done) < len(STREAMS) and time.monotonic() < deadline:
                try:
                    msg = output.read_next(2000)
                except pulsar.Timeout:
                    continue
                props = msg.properties()
                segments[props["stream"]].append((props, msg.data()))
                if props.get("segment_type") == "media" and int(props["last_seq"]) >= FRAMES - 1:
                    done.add(props["stream"])
            assert done == set(STREAMS), f"streams finished: {sorted(done)}"
    finally:
        supervisor.stop()

    for stream, parts in segments.items():
        inits = [data for props, data in parts if props["segment_type"] == "init"]
        media = sorted((int(props["segment_seq"]), props, data) for props, data in parts if props["segment_type"] == "media")
        assert inits, f"{stream}: no init segment"
        assert [seq for seq, _, _ in media] == list(range(len(media))), f"{stream}: fragments missing or doubled"
        assert all(props["codec_string"].startswith("avc1.") and props["rendition"] == "360p" for _, props, _ in media)
        assert all(float(props["capture_ts"]) > 0 and "t_transcode" in props and "t_chunk" in props and "t_route" in props for _, props, _ in media)
        decoded = decode_fmp4(inits[0] + b"".join(data for _, _, data in media))
        assert len(decoded) == FRAMES, f"{stream}: decoded {len(decoded)} of {FRAMES} frames"
        assert (decoded[0].width, decoded[0].height) == (480, 360)
        markers = [media_synth.marker_of(frame) for frame in decoded]
        assert markers == [i % media_synth.MARKER_PERIOD for i in range(FRAMES)], f"{stream}: frame order {markers}"
