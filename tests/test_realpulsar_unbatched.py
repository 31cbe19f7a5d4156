"""Unbatched outputs (docs/immediate-publish.md) on Apache Pulsar itself: transcode, chunk and route, created with Pulsar's own pulsar-admin
from the shipped FunctionConfigs (unchanged, absolute paths, archives for the worker's CPython 3.11),
send their outputs unbatched through the instance's own client, and still ack what they consumed.

What is asserted is robust (every output's message id has batch index -1: it left as its own entry,
not inside a 10 ms batch; the inputs end up acked); the per-hop times are printed, and belong to
bench/glass_to_glass.py. Runs after test_realpulsar_pipeline.py (same namespace) and cleans up.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import pulsar
import pytest

from realpulsar.standalone import Standalone
from tests.realpulsar_support import REPO, rest, wait_running, wait_subscribed
from tests.test_functions_media_support import frame_props, media_synth
from tests.test_realpulsar_pipeline import build_archives

pytestmark = pytest.mark.pulsar

NS = "persistent://public/wtpulsar/"
NAMES = ("transcode", "chunk", "route")
ROOM_TOPIC = "persistent://public/wtpulsar-rooms/room-room1-video-360p"


@pytest.fixture(scope="module")
def media_path(real_pulsar: Standalone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    pulsar_ = real_pulsar
    archives = build_archives(tmp_path_factory.mktemp("archives-unbatched"))
    rest(pulsar_, "PUT", "/admin/v2/namespaces/public/wtpulsar")  # may exist already (409)
    rest(pulsar_, "PUT", "/admin/v2/namespaces/public/wtpulsar-rooms")  # route's per-room outputs
    for name in NAMES:
        pulsar_.admin("functions", "create", "--function-config-file",
                      str(REPO / "deploy" / "functions" / f"{name}.yaml"), "--py", str(archives[name]), check=True)
    for name in NAMES:
        wait_running(pulsar_, name)
    wait_subscribed(pulsar_, ["raw-video", "encoded", "segments"])
    yield pulsar_
    delete_functions(pulsar_)


def delete_functions(standalone: Standalone) -> None:
    """Through the admin REST: each `pulsar-admin` call starts a JVM (seconds)."""
    for name in NAMES:
        rest(standalone, "DELETE", f"/admin/v3/functions/public/wtpulsar/{name}")  # 404 once gone


def backlog(standalone: Standalone, topic: str) -> int:
    status, stats = rest(standalone, "GET", f"/admin/v2/persistent/public/wtpulsar/{topic}/stats")
    assert status == 200, stats
    return sum(int(sub.get("msgBacklog", 0)) for sub in stats["subscriptions"].values())


def read(reader: Any, want: int, timeout: float = 120) -> list[Any]:
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < deadline:
        try:
            got.append(reader.read_next(1000))
        except pulsar.Timeout:
            continue
    return got


def test_media_outputs_leave_unbatched_on_apache_pulsar(media_path: Standalone) -> None:
    client = pulsar.Client(media_path.service_url, operation_timeout_seconds=30)
    try:
        readers = {t: client.create_reader(t, pulsar.MessageId.latest) for t in (NS + "encoded", NS + "segments", ROOM_TOPIC)}
        producer = client.create_producer(NS + "raw-video", batching_enabled=False, block_if_queue_full=True)
        frames = media_synth.pattern_frames(30)
        for seq, chunk in enumerate(media_synth.encode_chunks(frames, "h264", keyint=15)):
            props = frame_props("cam", "h264", seq, chunk)
            props["t_ingress"] = f"{time.time() * 1000:.3f}"
            producer.send(chunk.data, properties=props, partition_key="cam", event_timestamp=int(props["capture_ts"]))
            time.sleep(1 / 30)  # a live stream: one frame at a time
        encoded = read(readers[NS + "encoded"], 30)
        segments = read(readers[NS + "segments"], 3)
        room = read(readers[ROOM_TOPIC], 3)
        assert len(encoded) >= 20 and segments and room, (len(encoded), len(segments), len(room))
        for name, msgs in (("encoded", encoded), ("segments", segments), ("room", room)):
            assert {m.message_id().batch_index() for m in msgs} == {-1}, f"{name}: an output left inside a batch"
        deadline = time.monotonic() + 60
        # transcode keeps the last GOP (15 frames) until the next keyframe, chunk its open fragment (docs/real-pulsar.md §8)
        while time.monotonic() < deadline and (backlog(media_path, "raw-video") > 15 or backlog(media_path, "encoded") > 15):
            time.sleep(0.5)
        assert backlog(media_path, "raw-video") <= 15 and backlog(media_path, "encoded") <= 15
        hops: dict[str, list[float]] = {}
        for msg in room:
            p = msg.properties()
            for hop, (a, b) in {"ingress→transcode": ("t_ingress", "t_transcode"),
                                "transcode→chunk": ("t_transcode", "t_chunk"),
                                "chunk→route": ("t_chunk", "t_route")}.items():
                if p.get(a) and p.get(b):
                    hops.setdefault(hop, []).append(float(p[b]) - float(p[a]))
        print("per-hop on Apache Pulsar (ms, median of fragments' first frames; informational):",
              {k: round(statistics.median(v), 1) for k, v in hops.items()})
    finally:
        client.close()


def test_zz_cleanup_namespace(media_path: Standalone) -> None:
    """Leave no function of this module running for test_realpulsar_zz_deploy.py, which deploys the
    namespace's functions itself (the namespace stays: Pulsar 4.0.8 answers 405 to a forced namespace
    delete unless the broker allows it, and deploy takes an existing namespace as it is)."""
    delete_functions(media_path)
    deadline = time.monotonic() + 60
    left: list[str] = list(NAMES)
    while left and time.monotonic() < deadline:
        status, body = rest(media_path, "GET", "/admin/v3/functions/public/wtpulsar")
        if status == 200:
            left = [name for name in NAMES if name in body]
        if left:
            time.sleep(1)
    assert not left, f"functions still deployed 60 s after their delete: {left}"
