"""`wtpulsar ingress --workers 2`: two processes on one UDP and one HTTP port serve one room's viewers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pulsar

from clients.webtransport import open_webtransport
from ingress import tokens
from ingress.names import room_topic_url
from schemas import framing_codec as f

NS = room_topic_url("public", "wtpulsar", "")  # route writes room topics into the rooms namespace
REPO = Path(__file__).resolve().parent.parent
SECRET = b"w" * 64


def start_workers(broker_url: str, tmp: Path, workers: int = 2) -> tuple[subprocess.Popen[str], str, str]:
    (tmp / "secret").write_bytes(SECRET)
    proc = subprocess.Popen(
        [sys.executable, "-m", "wtpulsar.cli", "ingress", "--workers", str(workers), "--listen", "127.0.0.1:0",
         "--http", "127.0.0.1:0", "--broker-service-url", broker_url, "--state-dir", str(tmp / "state"),
         "--secret-file", str(tmp / "secret"), "--sessions-per-address", "200"],
        stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"ingress exited with {proc.wait()}"
        if line.startswith("ingress: WebTransport") and f"({workers} workers)" in line:
            words = line.split()
            return proc, words[words.index("WebTransport") + 1], words[words.index("HTTP") + 1]
    raise TimeoutError("the workers did not start")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(30)


def test_two_workers_share_the_ports_and_serve_one_rooms_viewers(broker, tmp_path) -> None:
    room = "r" + uuid.uuid4().hex[:10]
    topic = f"room-{room}-video-360p"
    frames = 40
    stream = [({"segment_type": "init", "stream": "cam", "user": "pub", "rendition": "360p"}, b"init")] + [
        ({"segment_type": "media", "stream": "cam", "user": "pub", "rendition": "360p", "keyframe": "1" if n == 0 else "0",
          "first_seq": str(n), "last_seq": str(n)}, b"frag%d" % n) for n in range(frames)]
    expected = [payload for _, payload in stream]
    proc, wt_url, http_url = start_workers(broker.service_url, tmp_path)
    try:
        async def wt_viewer(n: int) -> list[bytes]:
            token = tokens.issue(SECRET, room, f"wt{n}", "viewer", time.time())
            async with open_webtransport(f"{wt_url}?token={token}&mode=view&kinds=video", timeout=30) as c:
                assert c.state.status == 200

                def got(state: Any) -> list[bytes]:
                    return [r.payload for _, r in state.records if isinstance(r, f.Delivery)]

                await c.wait_for(lambda s: len(got(s)) >= len(expected), 60)
                await asyncio.sleep(0.3)
                return got(c.state)

        async def ws_viewer(http: aiohttp.ClientSession, n: int) -> list[bytes]:
            token = tokens.issue(SECRET, room, f"ws{n}", "viewer", time.time())
            async with http.ws_connect(f"{http_url}/ws?token={token}&mode=view&kinds=video") as ws:
                out: list[bytes] = []
                while len(out) < len(expected):
                    record = f.parse((await ws.receive(timeout=60)).data)
                    assert isinstance(record, f.Delivery)
                    out.append(record.payload)
                return out

        async def workers_serving(http: aiohttp.ClientSession) -> dict[int, int]:
            """pid -> sessions, from /health over new connections (each hashed to a worker afresh)."""
            seen: dict[int, int] = {}
            for _ in range(60):
                async with http.get(f"{http_url}/health", headers={"Connection": "close"}) as r:
                    body = await r.json()
                seen[body["pid"]] = body["sessions"]
                if len(seen) == 2 and all(seen.values()):
                    break
            return seen

        async def main() -> None:
            connector = aiohttp.TCPConnector(force_close=True)
            async with aiohttp.ClientSession(connector=connector) as http:
                tasks = [asyncio.create_task(wt_viewer(n)) for n in range(12)]
                tasks += [asyncio.create_task(ws_viewer(http, n)) for n in range(8)]
                await asyncio.sleep(2.0)  # the viewers are in (the join point covers any who are late)
                serving = await workers_serving(http)
                client = pulsar.Client(broker.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Warn))
                try:
                    producer = client.create_producer(NS + topic, batching_enabled=False)
                    for properties, payload in stream:
                        await asyncio.to_thread(producer.send, payload, properties=properties)
                finally:
                    await asyncio.to_thread(client.close)
                results = await asyncio.gather(*tasks)
            assert len(serving) == 2 and all(serving.values()), serving  # both workers had viewers of the room
            assert all(got == expected for got in results), [len(got) for got in results]

        asyncio.run(asyncio.wait_for(main(), 120))
        assert proc.poll() is None  # the supervisor and its workers still up
    finally:
        assert stop(proc) == 0


def test_workers_must_be_a_positive_number() -> None:
    out = subprocess.run([sys.executable, "-m", "wtpulsar.cli", "ingress", "--workers", "0"], capture_output=True,
                         text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2 and "--workers: '0': a whole number of at least 1" in out.stderr


def test_health_names_the_worker(tmp_path) -> None:
    from tests.ingress_support import FakePublisher, ingress

    async def main() -> None:
        async with ingress(tmp_path, FakePublisher(), worker=3) as h, aiohttp.ClientSession() as http:
            async with http.get(h.http_url + "/health") as r:
                body = json.loads(await r.text())
            assert body["worker"] == 3 and body["pid"] == os.getpid()

    asyncio.run(main())
