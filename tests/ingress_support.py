"""Helpers for the ingress tests: a fake broker-side publisher and a server-in-a-context."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from ingress.config import IngressConfig
from ingress.server import IngressHandle, start_ingress
from ingress.session import Publish
from schemas.framing_codec import Codec, Frame, Kind


class FakePublisher:
    """Acks every publish on the next loop pass, or holds them while ``hold`` is True."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.sent: list[Publish] = []
        self.held: list[Callable[[bool, str], None]] = []
        self.inflight = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    def send(self, publish: Publish, received_at: float, done: Callable[[bool, str], None]) -> None:
        self.sent.append(publish)
        if self.hold:
            self.held.append(done)
        else:
            asyncio.get_running_loop().call_soon(done, True, "")

    def release(self) -> None:
        self.hold = False
        held, self.held = self.held, []
        for done in held:
            done(True, "")


@asynccontextmanager
async def ingress(tmp_path: Path, publisher: Any = None, **overrides: Any) -> AsyncIterator[IngressHandle]:
    overrides.setdefault("page", tmp_path / "live_client.html")  # page=None: the packaged page
    config = IngressConfig(listen="127.0.0.1:0", http="127.0.0.1:0", state_dir=tmp_path / "state",
                           secret=b"s" * 64, **overrides)
    handle = await start_ingress(config, publisher=publisher)
    try:
        yield handle
    finally:
        await handle.stop()


def video(seq: int, stream: str = "cam", size: int = 1000, key: bool | None = None) -> Frame:
    return Frame(Kind.VIDEO, Codec.H264, stream, seq, seq * 33_333, time.time() * 1000.0,
                 bytes([seq % 256]) * size, seq == 0 if key is None else key, 640, 360)


def chat(seq: int, text: str = "hi", stream: str = "chat") -> Frame:
    return Frame(Kind.CHAT, Codec.JSON, stream, seq, 0, time.time() * 1000.0,
                 json.dumps({"text": text, "seq": seq}).encode())
