"""A synthetic publisher that resends what the ingress did not acknowledge, and its unit tests.

Neither schemas/framing_codec.py nor clients/webtransport.py keeps sent frames for a resend: the Ack record
says what is stored (FRAMING.md "Ack": OK = broker-acknowledged; media acks cumulative per stream id,
chat acks exactly one seq; REJECTED names one frame that was not published), and keeping the rest
is the client's job. `ResendLedger` is that job, sans-I/O; `WsPublisher` drives it over the
WebSocket fallback (/ws): it keeps "capturing" while the ingress is away, reconnects with a short
backoff and resends every unacknowledged frame, oldest first, on the new session.

A REJECTED frame is resent on a *new* session: inside the old one the ingress's cumulative
acked_seq is already past it, so a resend's OK would never be announced (session.py `published`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas.framing_codec import Ack, AckStatus, Codec, Frame, FramingError, Kind, parse, serialize

if typing.TYPE_CHECKING:  # aiohttp is imported where it is used
    import aiohttp

RECONNECT_DELAY_S = 0.2


@dataclass
class ResendLedger:
    """What one stream id sent, what the ingress confirmed, and what must go again."""

    per_message: bool  # chat/file: an Ack names exactly one seq; media: cumulative
    unacked: dict[int, bytes] = field(default_factory=dict)  # seq -> record, in seq order
    confirmed: set[int] = field(default_factory=set)
    rejected: set[int] = field(default_factory=set)
    resent: int = 0

    def add(self, seq: int, record: bytes) -> None:
        self.unacked[seq] = record

    def on_ack(self, ack: Ack) -> bool:
        """Apply one Ack; True when a frame was REJECTED and the session should be renewed."""
        if ack.status != AckStatus.OK:
            if ack.seq in self.unacked:
                self.rejected.add(ack.seq)
            return True
        done = [ack.seq] if self.per_message else [s for s in self.unacked if s <= ack.seq and s not in self.rejected]
        for seq in done:
            if self.unacked.pop(seq, None) is not None:
                self.confirmed.add(seq)
        return False

    def to_resend(self) -> list[bytes]:
        """On a fresh session: everything not yet confirmed, oldest first."""
        self.rejected.clear()
        self.resent += len(self.unacked)
        return [self.unacked[s] for s in sorted(self.unacked)]


def synthetic_frames(kind: Kind, stream: str, room: str, user: str, codec: str = "jpeg") -> Callable[[int], Frame]:
    """Frame factory by seq: tiny video (JPEG: every frame a keyframe; h264: a keyframe every 30),
    Opus audio, or chat JSON."""
    if kind == Kind.VIDEO:
        from tests.media_synth import encode_chunks, pattern_frames

        chunks = encode_chunks(pattern_frames(30, 160, 120), codec, keyint=30)
        wire = Codec.JPEG if codec == "jpeg" else Codec[codec.upper()]
        return lambda seq: Frame(Kind.VIDEO, wire, stream, seq, seq * 100_000, time.time() * 1000.0,
                                 chunks[seq % len(chunks)].data, chunks[seq % len(chunks)].keyframe, 160, 120)
    if kind == Kind.AUDIO:
        from tests.media_synth import opus_packets

        packets = opus_packets(1.0)
        return lambda seq: Frame(Kind.AUDIO, Codec.OPUS, stream, seq, seq * 20_000, time.time() * 1000.0,
                                 packets[seq % len(packets)], True)

    def chat(seq: int) -> Frame:
        now = time.time() * 1000.0
        body = {"room": room, "user": user, "msg_id": f"{stream}-{seq}", "text": f"message number {seq}",
                "sent_at": int(now), "stream": stream}
        return Frame(Kind.CHAT, Codec.JSON, stream, seq, 0, now, json.dumps(body).encode())

    return chat


@dataclass
class WsPublisher:
    """One publisher session over /ws that survives ingress restarts by reconnecting and resending."""

    url: str  # ws://host:port/ws?token=...
    kind: Kind
    stream: str
    make_frame: Callable[[int], Frame]
    interval_s: float
    ledger: ResendLedger = field(init=False)
    sent: int = 0
    sessions: int = 0
    errors: list[str] = field(default_factory=list)
    _wake: asyncio.Event = field(default_factory=asyncio.Event, init=False)  # a new frame was captured

    def __post_init__(self) -> None:
        self.ledger = ResendLedger(per_message=self.kind in (Kind.CHAT, Kind.FILE))

    async def run(self, stop: asyncio.Event, drain_s: float = 30.0) -> None:
        """Capture a frame every interval until `stop`, then keep the session until all are acked."""
        import aiohttp

        capture = asyncio.create_task(self._capture(stop))
        deadline: float | None = None
        async with aiohttp.ClientSession() as http:
            while True:
                if stop.is_set():
                    deadline = deadline or time.monotonic() + drain_s
                    if not self.ledger.unacked or time.monotonic() > deadline:
                        break
                try:
                    async with http.ws_connect(self.url, heartbeat=5.0) as ws:
                        self.sessions += 1
                        await self._session(ws, stop, deadline)
                except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(RECONNECT_DELAY_S)
        capture.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await capture

    async def _capture(self, stop: asyncio.Event) -> None:
        # Frames are captured on their own clock, connected or not, as a camera would.
        seq = 0
        while not stop.is_set():
            self.ledger.add(seq, serialize(self.make_frame(seq)))
            self._wake.set()
            seq += 1
            await asyncio.sleep(self.interval_s)

    async def _session(self, ws: aiohttp.ClientWebSocketResponse, stop: asyncio.Event, deadline: float | None) -> None:
        import aiohttp

        sent_upto = -1
        for record in self.ledger.to_resend():
            await ws.send_bytes(record)
        if self.ledger.unacked:
            sent_upto = max(self.ledger.unacked)
        renew = asyncio.Event()

        async def reader() -> None:
            async for msg in ws:
                if msg.type != aiohttp.WSMsgType.BINARY:
                    continue
                try:
                    record = parse(msg.data)
                except FramingError as exc:
                    self.errors.append(f"bad record from ingress: {exc}")
                    continue
                if isinstance(record, Ack) and record.stream == self.stream and self.ledger.on_ack(record):
                    renew.set()
            renew.set()  # the ingress closed the session

        read_task = asyncio.create_task(reader())
        try:
            while not renew.is_set():
                if stop.is_set() and (not self.ledger.unacked or (deadline and time.monotonic() > deadline)):
                    return
                fresh = [s for s in self.ledger.unacked if s > sent_upto]
                for seq in fresh:
                    await ws.send_bytes(self.ledger.unacked[seq])
                    self.sent += 1
                    sent_upto = seq
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), 0.1)
        finally:
            read_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await read_task
            with contextlib.suppress(Exception):
                await ws.close()


# ---- unit tests of the ledger -------------------------------------------------------------------
def test_cumulative_ack_confirms_everything_up_to_it() -> None:
    ledger = ResendLedger(per_message=False)
    for seq in range(5):
        ledger.add(seq, bytes([seq]))
    assert ledger.on_ack(Ack("cam", 2)) is False
    assert ledger.confirmed == {0, 1, 2}
    assert ledger.to_resend() == [b"\x03", b"\x04"]
    assert ledger.resent == 2


def test_rejected_frame_is_kept_across_a_later_cumulative_ack_and_renews_the_session() -> None:
    ledger = ResendLedger(per_message=False)
    for seq in range(4):
        ledger.add(seq, bytes([seq]))
    assert ledger.on_ack(Ack("cam", 1, AckStatus.REJECTED, 4012, "broker")) is True
    ledger.on_ack(Ack("cam", 3))  # "every frame up to 3 that was not individually REJECTED"
    assert ledger.confirmed == {0, 2, 3}
    assert ledger.to_resend() == [b"\x01"]
    ledger.on_ack(Ack("cam", 1))  # the resend, acked on the new session
    assert ledger.confirmed == {0, 1, 2, 3} and not ledger.unacked


def test_chat_acks_name_exactly_one_frame() -> None:
    ledger = ResendLedger(per_message=True)
    for seq in range(3):
        ledger.add(seq, bytes([seq]))
    ledger.on_ack(Ack("chat", 2))
    assert ledger.confirmed == {2}
    assert sorted(ledger.unacked) == [0, 1]


def test_synthetic_frames_serialise() -> None:
    import sys
    from pathlib import Path

    functions = str(Path(__file__).resolve().parents[1] / "functions")
    if functions not in sys.path:
        sys.path.insert(0, functions)
    for kind in (Kind.VIDEO, Kind.AUDIO, Kind.CHAT):
        make = synthetic_frames(kind, "s1", "room1", "u1")
        frame = parse(serialize(make(3)))
        assert isinstance(frame, Frame) and frame.seq == 3 and frame.kind == kind and frame.payload
    h264 = synthetic_frames(Kind.VIDEO, "s1", "room1", "u1", codec="h264")
    assert [h264(s).keyframe for s in (0, 1, 29, 30)] == [True, False, False, True]
