"""Read credit that follows the application, so QUIC flow control can push back on a publisher.

aioquic grants MAX_STREAM_DATA by doubling the window whenever half of it has been *received*
(``QuicConnection._write_stream_limits``), regardless of whether the app has used the data
(docs/media-and-webtransport.md §1.8: a slow reader does not slow the sender). For ingest that means the ingress would buffer without
bound when Pulsar is slow. We replace that method on one connection instance with a sliding window:
credit = highest offset received + ``window``, raised only while the owning session is not
backlogged. While it is, the browser's writer blocks once it has used its credit.

This touches aioquic internals (``QuicStream.max_stream_data_local[_sent]``, ``builder.start_frame``);
it is checked against aioquic 1.7.2 and covered by tests/test_ingress_webtransport.py.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicFrameType

MAX_STREAM_DATA_FRAME_CAPACITY = 1 + 8 + 8  # frame type + two varints, upper bound


class CreditGate:
    """Which peer streams are gated, and whether each is paused; one dict lookup per stream per packet."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.streams: dict[int, bool] = {}  # stream id -> paused

    def add(self, stream_id: int, paused: bool) -> None:
        self.streams[stream_id] = paused

    def discard(self, stream_id: int) -> None:
        self.streams.pop(stream_id, None)

    def set_paused(self, stream_ids: Iterable[int], paused: bool) -> None:
        for stream_id in stream_ids:
            if stream_id in self.streams:
                self.streams[stream_id] = paused


def install(quic: QuicConnection, gate: CreditGate) -> None:
    """Gate credit of the peer-initiated streams registered in ``gate``; others keep aioquic's policy."""
    original = quic._write_stream_limits
    streams = gate.streams
    window = gate.window

    def write_stream_limits(self: QuicConnection, builder: Any, space: Any, stream: Any) -> None:
        # aioquic calls this for every stream on every packet it builds: keep the common path short.
        state = streams.get(stream.stream_id)
        if state is None or not stream.max_stream_data_local:
            return original(builder=builder, space=space, stream=stream)
        if not state:
            target = stream.receiver.highest_offset + window
            # raise in steps of half a window to avoid a MAX_STREAM_DATA frame per packet
            if target - stream.max_stream_data_local >= window // 2:
                stream.max_stream_data_local = target
        if stream.max_stream_data_local_sent == stream.max_stream_data_local:
            return None
        buf = builder.start_frame(
            QuicFrameType.MAX_STREAM_DATA,
            capacity=MAX_STREAM_DATA_FRAME_CAPACITY,
            handler=self._on_max_stream_data_delivery,
            handler_args=(stream,),
        )
        buf.push_uint_var(stream.stream_id)
        buf.push_uint_var(stream.max_stream_data_local)
        stream.max_stream_data_local_sent = stream.max_stream_data_local
        return None

    quic._write_stream_limits = types.MethodType(write_stream_limits, quic)  # type: ignore[method-assign]  # the deliberate patch this module exists for


def received_offset(quic: QuicConnection, stream_id: int) -> int:
    """Highest byte offset received on a stream (for tests and metrics)."""
    stream = quic._streams.get(stream_id)
    return stream.receiver.highest_offset if stream is not None else 0


def queued_bytes(quic: QuicConnection, stream_id: int) -> int:
    """Bytes written to a stream and not yet acknowledged by the peer (docs/media-and-webtransport.md §1.8, private fields)."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    sender = stream.sender
    return sender._buffer_stop - sender._buffer_start
