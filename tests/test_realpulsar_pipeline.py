"""The pipeline on Apache Pulsar itself: created with Pulsar's own `bin/pulsar-admin`, fed by the ingress.

The four FunctionConfigs are the shipped files, unchanged; the archives are what `make package` builds,
for the worker's Python (CPython 3.11, glibc: the cache's worker virtualenv). Pulsar's
`bin/pulsar-admin` changes into PULSAR_HOME before it runs, so relative paths would be resolved there
(docs/real-pulsar.md §6): the commands get absolute paths, exactly as the README tells users to.

A synthetic publisher streams 1280x720 JPEG video, Opus audio and chat over WebTransport through the
ingress into Pulsar; a viewer session, `wtpulsar consume` and `wtpulsar audit` then read the output.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import pytest
import yaml

from clients.webtransport import ResendingPublisher, open_webtransport
from ingress import tokens
from realpulsar.distribution import cache_root
from realpulsar.standalone import Standalone
from schemas import framing_codec as framing
from schemas.framing_codec import Codec, Frame, Kind
from tests.broker_process import free_port
from tests.realpulsar_support import (
    FUNCTIONS,
    REPO,
    WORKER_PLATFORM,
    WORKER_PYTHON_VERSION,
    function_status,
    instance_pids,
    wait_running,
    wait_subscribed,
)

pytestmark = pytest.mark.pulsar

SECRET = "real-pulsar-test-secret-" + "y" * 40
INPUTS = {"transcode": ["raw-video", "raw-audio"], "chunk": ["encoded"], "moderate": ["chat-in"],
          "route": ["segments", "chat-approved", "moderation"]}
VIDEO_FPS = 10
VIDEO_FRAMES = 40
AUDIO_PACKETS = 100  # 20 ms Opus packets, sent 2.5 per video frame (the pace is not the point)


def wtpulsar(*args: str, timeout: float = 120.0, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "wtpulsar.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def build_archives(out: Path) -> dict[str, Path]:
    """`make package PYTHON_VERSION=3.11 PLATFORM=manylinux_2_28_x86_64`, into `out` (the repo's build/ stays as it is)."""
    done = subprocess.run(
        [sys.executable, "-m", "deploy.packaging", "--root", str(REPO), "--out", str(out),
         "--wheel-cache", str(cache_root() / "wheels"),
         "--python-version", WORKER_PYTHON_VERSION, "--platform", WORKER_PLATFORM],
        cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    return {name: out / f"{name}.zip" for name in FUNCTIONS}


@pytest.fixture(scope="module")
def deployed(real_pulsar: Standalone, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Standalone]:
    pulsar = real_pulsar
    archives = build_archives(tmp_path_factory.mktemp("archives"))
    pulsar.admin("namespaces", "create", "public/wtpulsar", check=True)
    pulsar.admin("namespaces", "create", "public/wtpulsar-rooms", check=True)  # route's per-room outputs
    # The audit counts frames in on the raw topics: keep what transcode acknowledged (a Pulsar retention policy).
    pulsar.admin("namespaces", "set-retention", "public/wtpulsar", "--size", "2G", "--time", "2h", check=True)
    for name in FUNCTIONS:
        pulsar.admin("functions", "create",
                     "--function-config-file", str(REPO / "deploy" / "functions" / f"{name}.yaml"),
                     "--py", str(archives[name]), check=True)
    for name in FUNCTIONS:
        wait_running(pulsar, name)
    wait_subscribed(pulsar, [topic for topics in INPUTS.values() for topic in topics])
    yield pulsar
    for name in FUNCTIONS:
        pulsar.admin("functions", "delete", "--tenant", "public", "--namespace", "wtpulsar", "--name", name)


class Ingress:
    """`wtpulsar ingress` against the standalone, on free loopback ports."""

    def __init__(self, service_url: str, root: Path) -> None:
        self.udp = free_port()
        self.http = free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.log = root / "ingress.log"
        args = [sys.executable, "-m", "wtpulsar.cli", "ingress", "--listen", f"127.0.0.1:{self.udp}",
                "--http", f"127.0.0.1:{self.http}", "--broker-service-url", service_url,
                "--state-dir", str(root / "ingress"), "--secret", SECRET]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + 30
        import socket

        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                with socket.create_connection(("127.0.0.1", self.http), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise TimeoutError("ingress did not listen")

    def url(self, room: str, user: str, role: str, query: str = "") -> str:
        token = tokens.issue(SECRET.encode(), room, user, role, time.time(), 3600)
        return f"https://127.0.0.1:{self.udp}/wt?token={token}{query}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def video_frames(count: int, stream: str = "cam") -> list[Frame]:
    sys.path.insert(0, str(REPO / "functions"))
    from tests.media_synth import encode_chunks, pattern_frames

    chunks = encode_chunks(pattern_frames(count, 1280, 720), "jpeg")
    return [Frame(Kind.VIDEO, Codec.JPEG, stream, seq, seq * 1_000_000 // VIDEO_FPS, 0.0, chunk.data, True, 1280, 720)
            for seq, chunk in enumerate(chunks)]


def audio_frames(count: int) -> list[Frame]:
    sys.path.insert(0, str(REPO / "functions"))
    from tests.media_synth import opus_packets

    packets = opus_packets(count * 0.02 + 0.1)
    return [Frame(Kind.AUDIO, Codec.OPUS, "mic", seq, seq * 20_000, 0.0, packets[seq], True) for seq in range(count)]


def captured(frame: Frame) -> Frame:
    """The frame stamped with the moment it is handed to the publisher, as a capture would be."""
    frame.capture_ts = time.time() * 1000.0
    return frame


CHAT_TEXTS = ["hello from apache pulsar", "this is shit", "third message"]


def chat_frames(room: str) -> list[Frame]:
    out = []
    for seq, text in enumerate(CHAT_TEXTS):
        now = time.time() * 1000.0
        body = {"room": room, "user": "alice", "msg_id": f"chat-{seq}", "text": text, "sent_at": int(now), "stream": "chat"}
        out.append(Frame(Kind.CHAT, Codec.JSON, "chat", seq, 0, now, json.dumps(body).encode()))
    return out


async def publish_and_view(ingress: Ingress, room: str) -> tuple[ResendingPublisher, list[framing.Delivery]]:
    """Stream everything in real time while a viewer watches; return when all is acknowledged."""
    publisher = ResendingPublisher(ingress.url(room, "alice", "publisher"))
    stop = asyncio.Event()
    seen: list[framing.Delivery] = []
    async with open_webtransport(ingress.url(room, "bob", "viewer", "&mode=view&rendition=360p")) as viewer:
        assert viewer.state.status == 200, viewer.state
        run = asyncio.create_task(publisher.run(stop, drain_s=60.0))
        video, audio = video_frames(VIDEO_FRAMES), audio_frames(AUDIO_PACKETS)
        for frame in chat_frames(room)[:1]:
            publisher.publish(frame)
        for i in range(VIDEO_FRAMES):
            publisher.publish(captured(video[i]))
            for packet in audio[i * 5 // 2:(i + 1) * 5 // 2]:
                publisher.publish(captured(packet))
            if i == VIDEO_FRAMES // 2:
                for frame in chat_frames(room)[1:]:
                    publisher.publish(frame)
            await asyncio.sleep(1.0 / VIDEO_FPS)
        stop.set()
        await run

        def delivered(kind: Kind) -> list[framing.Delivery]:
            return [r for _, r in viewer.state.records if isinstance(r, framing.Delivery) and r.kind == kind]

        try:
            await viewer.wait_for(lambda s: len(delivered(Kind.CHAT)) >= 2 and any(
                d.properties.get("segment_type") == "media" and int(d.properties.get("last_seq", -1)) >= VIDEO_FRAMES - 1
                for d in delivered(Kind.VIDEO)), 90)
        except TimeoutError:
            pass  # asserted below with what did arrive
        seen = [r for _, r in viewer.state.records if isinstance(r, framing.Delivery)]
    return publisher, seen


def decode(data: bytes) -> list[av.VideoFrame]:
    with av.open(io.BytesIO(data), mode="r", format="mp4") as container:
        return list(container.decode(video=0))


def test_pulsar_admin_created_every_function_from_the_shipped_yaml(deployed: Standalone) -> None:
    for name in FUNCTIONS:
        shipped = yaml.safe_load((REPO / "deploy" / "functions" / f"{name}.yaml").read_text())
        status = function_status(deployed, name)
        assert status["numInstances"] == shipped["parallelism"] == status["numRunning"], status
        assert all(i["status"]["running"] and not i["status"]["error"] for i in status["instances"]), status
        out = deployed.admin("functions", "get", "--tenant", "public", "--namespace", "wtpulsar", "--name", name,
                             check=True)
        got = json.loads(out.stdout)
        assert got["retainKeyOrdering"] is True and got["processingGuarantees"] == "MANUAL", got
        assert got["className"] == shipped["className"]
        assert sorted(got["inputSpecs"]) == sorted(shipped["inputSpecs"])


def test_ingress_to_viewers_consume_and_audit_on_apache_pulsar(deployed: Standalone, tmp_path: Path) -> None:
    room = "realpulsar"
    ingress = Ingress(deployed.service_url, tmp_path)
    try:
        publisher, seen = asyncio.run(publish_and_view(ingress, room))
    finally:
        ingress.stop()
    assert not publisher.buffer.kept, f"frames never acknowledged by the ingress: {len(publisher.buffer.kept)}; {publisher.errors[-3:]}"

    # The viewer session got the 360p init + fragments and the moderated chat.
    video = [d for d in seen if d.kind == Kind.VIDEO]
    assert video and video[0].properties.get("segment_type") == "init", [d.properties for d in video[:2]]
    frames = decode(b"".join(d.payload for d in video))
    assert len(frames) >= VIDEO_FRAMES - 1 and (frames[0].width, frames[0].height) == (640, 360)
    chats = [json.loads(d.payload) for d in seen if d.kind == Kind.CHAT]
    assert [c["text"] for c in chats][:1] == [CHAT_TEXTS[0]]
    assert any(c["text"].startswith("this is ") and "shit" not in c["text"] for c in chats), chats

    env = {"PULSAR_URL": deployed.service_url}
    for rendition, size in (("720p", (1280, 720)), ("360p", (640, 360))):
        out = tmp_path / f"{rendition}.mp4"
        done = wtpulsar("consume", room, "--kind", "video", "--rendition", rendition, "--from-start",
                        "--broker-service-url", deployed.service_url, "--duration", "8", "--out", str(out), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        decoded = decode(out.read_bytes())
        assert len(decoded) == VIDEO_FRAMES, f"{rendition}: {len(decoded)} of {VIDEO_FRAMES} frames"
        assert (decoded[0].width, decoded[0].height) == size
    done = wtpulsar("consume", room, "--kind", "chat", "--from-start", "--broker-service-url", deployed.service_url,
                    "--duration", "5", env=env)
    assert done.returncode == 0 and CHAT_TEXTS[0] in done.stdout and "this is ****" in done.stdout, done.stdout

    tracks = audit(deployed, room, tmp_path)
    assert {"cam/720p", "cam/360p", "mic/audio", "chat/chat"} <= set(tracks), sorted(tracks)
    lost = {name: t["missing"] for name, t in tracks.items() if t["missing"]}
    assert tracks["cam/720p"]["frames_out"] == VIDEO_FRAMES == tracks["cam/360p"]["frames_out"]
    assert lost == {}, f"frames lost on Apache Pulsar: {lost}"


def audit(pulsar: Standalone, room: str, folder: Path) -> dict[str, dict[str, Any]]:
    """`wtpulsar audit ROOM` against the standalone: the report's tracks by `stream/rendition`."""
    report = folder / f"audit-{room}.json"
    done = wtpulsar("audit", room, "--broker-service-url", pulsar.service_url, "--admin-url", pulsar.admin_url,
                    "--kinds", "video,audio,chat", "--renditions", "720p,360p", "--json", str(report), timeout=180)
    print(done.stdout)
    assert report.exists(), done.stdout + done.stderr
    tracks = {f"{t['stream']}/{t['rendition']}": t for t in json.loads(report.read_text())["tracks"]}
    assert (done.returncode == 0) == all(not t["missing"] for t in tracks.values()), done.stdout
    return tracks


def read_topic(service_url: str, topic: str, until: int, timeout: float = 60.0) -> list[tuple[dict[str, str], bytes]]:
    """Every message of `topic` from the earliest, until `until` messages were read or `timeout`."""
    import pulsar

    client = pulsar.Client(service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    try:
        namespace = "wtpulsar-rooms" if topic.startswith("room-") else "wtpulsar"  # route's outputs: their own namespace
        reader = client.create_reader(f"persistent://public/{namespace}/{topic}", pulsar.MessageId.earliest)
        out: list[tuple[dict[str, str], bytes]] = []
        deadline = time.monotonic() + timeout
        while len(out) < until and time.monotonic() < deadline:
            try:
                msg = reader.read_next(1000)
            except pulsar.Timeout:
                continue
            out.append((msg.properties(), msg.data()))
        return out
    finally:
        client.close()


async def send_chat(ingress: Ingress, room: str, user: str, texts: list[str]) -> ResendingPublisher:
    publisher = ResendingPublisher(ingress.url(room, user, "publisher"))
    stop = asyncio.Event()
    run = asyncio.create_task(publisher.run(stop, drain_s=60.0))
    for seq, text in enumerate(texts):
        now = time.time() * 1000.0
        body = {"room": room, "user": user, "msg_id": f"{user}-{seq}", "text": text, "sent_at": int(now), "stream": "chat"}
        publisher.publish(Frame(Kind.CHAT, Codec.JSON, "chat", seq, 0, now, json.dumps(body).encode()))
    stop.set()
    await run
    return publisher


def querystate(pulsar: Standalone, key: str) -> dict[str, Any] | None:
    out = pulsar.admin("functions", "querystate", "--tenant", "public", "--namespace", "wtpulsar",
                       "--name", "moderate", "--key", key)
    if out.returncode != 0:
        return None
    return dict(json.loads(out.stdout[out.stdout.index("{"):]))


def test_moderation_counts_in_pulsar_state(deployed: Standalone, tmp_path: Path) -> None:
    """Rate limit (5 per 10 s window) and duplicates (3rd copy in 30 s) decided from the table service."""
    room = "statecheck"
    ingress = Ingress(deployed.service_url, tmp_path)
    try:
        while time.time() * 1000.0 % 10_000 > 1_000:  # start at a window's beginning: all 8 fall in it
            time.sleep(0.1)
        started_ms = time.time() * 1000.0
        asyncio.run(send_chat(ingress, room, "carol", [f"distinct message {i}" for i in range(8)]))
        asyncio.run(send_chat(ingress, room, "dave", ["same words again"] * 3))
    finally:
        ingress.stop()
    verdicts = [json.loads(payload) for _, payload in
                read_topic(deployed.service_url, f"room-{room}-moderation", until=11)]
    assert len(verdicts) == 11, verdicts
    rules = {user: [v["rules"] for v in verdicts if v["user"] == user] for user in ("carol", "dave")}
    assert [("duplicate" in r) for r in rules["dave"]] == [False, False, True], rules["dave"]

    # The counters live in Pulsar's state: `pulsar-admin functions querystate` shows them. The rate
    # limit counts in fixed 10 s windows; all 8 were sent in the first second of one.
    window = int(started_ms) // 10_000
    counter = querystate(deployed, f"rate:carol:{window}")
    assert counter is not None and int(counter["numberValue"]) == 8, counter
    assert [("rate_limit" in r) for r in rules["carol"]] == [False] * 5 + [True] * 3, rules["carol"]
    recent = querystate(deployed, "recent:dave")
    assert recent is not None, "no duplicate record for dave in Pulsar state"
    value = recent.get("stringValue") or recent.get("byteValue") or ""
    assert value, recent

    # A message in a later window deletes carol's earlier window counters (context.del_counter): on
    # Pulsar 4.0.8 the state client really deletes the key (docs/real-pulsar.md §5).
    while time.time() * 1000.0 // 10_000 <= window:
        time.sleep(0.5)
    ingress = Ingress(deployed.service_url, tmp_path / "again")
    try:
        asyncio.run(send_chat(ingress, room, "carol", ["a message in a new window"]))
    finally:
        ingress.stop()
    read_topic(deployed.service_url, f"room-{room}-moderation", until=12)  # its verdict: it was processed
    assert querystate(deployed, f"rate:carol:{window}") is None, "the old window's counter was not deleted"


def test_kill_9_of_function_instances_loses_nothing(deployed: Standalone, tmp_path: Path) -> None:
    """SIGKILL every transcode and route instance mid-stream: the worker restarts them, the audit finds
    every frame on the output (unacknowledged input is redelivered to the new instances)."""
    room = "killnine"
    before = {name: instance_pids(deployed, name) for name in ("transcode", "route")}
    assert all(before.values()), before
    ingress = Ingress(deployed.service_url, tmp_path)

    async def stream() -> ResendingPublisher:
        publisher = ResendingPublisher(ingress.url(room, "erin", "publisher"))
        stop = asyncio.Event()
        run = asyncio.create_task(publisher.run(stop, drain_s=120.0))
        frames = video_frames(60)  # "cam" again, as the first test's room had: streams are per room
        for i, frame in enumerate(frames):
            publisher.publish(captured(frame))
            if i == 20:
                for pids in before.values():
                    for pid in pids:
                        os.kill(pid, signal.SIGKILL)
            await asyncio.sleep(1.0 / VIDEO_FPS)
        stop.set()
        await run
        return publisher

    try:
        publisher = asyncio.run(stream())
    finally:
        ingress.stop()
    assert not publisher.buffer.kept, publisher.errors[-3:]
    for name, pids in before.items():
        status = wait_running(deployed, name)
        assert sum(i["status"]["numRestarts"] for i in status["instances"]) >= len(pids), status
        assert not set(instance_pids(deployed, name)) & set(pids), f"{name} was not restarted"
    deadline = time.monotonic() + 120
    while True:
        tracks = audit(deployed, room, tmp_path)
        if all(t["frames_out"] == 60 for t in tracks.values()) or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert {"cam/720p", "cam/360p"} <= set(tracks), sorted(tracks)
    assert {n: t["missing"] for n, t in tracks.items() if t["missing"]} == {}
    assert tracks["cam/720p"]["frames_out"] == tracks["cam/360p"]["frames_out"] == 60
