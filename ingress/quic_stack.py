"""The QUIC stack the WebTransport ingress runs on, chosen at start: aioquic or qh3 (docs/fanout.md "QUIC stack").

Both stacks share aioquic's API shape (sans-I/O ``QuicConnection``, ``H3Connection``, the asyncio
``QuicConnectionProtocol``/``QuicServer``), so webtransport_server.py is written once against the
classes held here. What differs, and is handled here or by the caller through these helpers:

- HTTP/3 datagrams: aioquic's ``H3Connection.send_datagram(stream_id, …)`` takes the session's
  stream id and its ``DatagramReceived.stream_id`` is that stream id again; qh3's ``send_datagram``
  and ``DatagramReceived.flow_id`` carry the raw value of the datagram's first field, which
  RFC 9297 §2.1 defines as the *quarter* stream id (stream id / 4). ``datagram_session`` and
  ``send_datagram`` give both the session's stream id.
- Read credit: aioquic lets us replace how it writes MAX_STREAM_DATA (ingress/flow_gate.py); qh3's
  flow control lives in its compiled core and grants credit as data arrives, with no hook, so on
  qh3 the ingress holds a paused connection's packets instead (ingress/datagram_hold.py).
- ACK delay: aioquic's is an instance attribute we lower for ingest; qh3 fixes it in its core.
- Queued bytes of a viewer stream: aioquic's sender buffer (private fields, flow_gate.queued_bytes);
  qh3's public ``get_send_buffer_size(stream_id)``, which counts bytes not yet sent once (it excludes
  bytes in flight), i.e. what congestion control is holding back.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

STACKS = ("aioquic", "qh3")
DEFAULT_STACK = "qh3"  # about half of aioquic's CPU per delivered frame (bench/report.md "fanout"); docs/quic-stack.md
ENV = "WTPULSAR_QUIC_STACK"  # overrides the default (the test suite runs the WebTransport tests on both)


def default_name() -> str:
    """The stack used when none is given: $WTPULSAR_QUIC_STACK, else qh3."""
    return check_name(os.environ.get(ENV) or DEFAULT_STACK, f"${ENV}")


def check_name(name: str, where: str = "--quic-stack") -> str:
    if name not in STACKS:
        raise ValueError(f"{where} {name!r}: use one of {', '.join(STACKS)}")
    return name


@dataclass(frozen=True)
class QuicStack:
    """The classes of one stack that the ingress uses (typed Any: the two stacks' classes are unrelated types)."""

    name: str
    version: str
    QuicConnectionProtocol: Any
    QuicServer: Any
    serve: Any
    QuicConfiguration: Any
    H3Connection: Any
    H3_ALPN: list[str]
    stream_is_unidirectional: Any
    # QUIC events
    ConnectionTerminated: Any
    ProtocolNegotiated: Any
    StopSendingReceived: Any
    StreamReset: Any
    # HTTP/3 events
    DatagramReceived: Any
    DataReceived: Any
    HeadersReceived: Any
    WebTransportStreamDataReceived: Any

    @property
    def quarter_datagram_ids(self) -> bool:
        """True when the H3 datagram API speaks RFC 9297's quarter stream id rather than the stream id."""
        return self.name == "qh3"

    def datagram_session(self, event: Any) -> int:
        """The WebTransport session (its CONNECT stream id) a received H3 datagram belongs to."""
        if self.quarter_datagram_ids:
            return int(event.flow_id) * 4
        return int(event.stream_id)

    def send_datagram(self, h3: Any, session_id: int, data: bytes) -> None:
        h3.send_datagram(session_id // 4 if self.quarter_datagram_ids else session_id, data)

    def set_ack_delay(self, quic: Any, seconds: float) -> bool:
        """Lower the delay before ACKing (aioquic only); False when the stack offers no way to."""
        if self.name == "aioquic":
            quic._ack_delay = seconds
            return True
        return False

    def queued_bytes(self, quic: Any, stream_id: int) -> int:
        """Bytes written to a stream that the stack still holds (see the module docstring for the difference)."""
        if self.name == "aioquic":
            from ingress import flow_gate

            return flow_gate.queued_bytes(quic, stream_id)
        try:
            return int(quic.get_send_buffer_size(stream_id))
        except Exception:  # a stream the core no longer knows
            return 0

    def peer_address(self, quic: Any) -> Any:
        """The peer's (host, port, …) or None: aioquic's ``get_peer_address()``; qh3 has no such method, its
        core's active path names the peer (the address of the first packet before that)."""
        if self.name == "aioquic":
            return quic.get_peer_address()
        core = getattr(quic, "_core", None)
        if core is not None:
            try:
                return core.active_path[2]
            except Exception:
                pass
        return getattr(quic, "_remote_addr", None)

    @property
    def retry(self) -> bool:
        """Whether the server sends a Retry before accepting a connection.

        qh3 2.1.0, before the client's address is validated, fails to build its handshake flight
        ("packet builder capacity exhausted") when the client's ClientHello came in one datagram, as
        aioquic's does: it sends the first packet and then nothing until the client retransmits (observed).
        A Retry validates the address (RFC 9000 §8.1), lifting the three-times amplification limit, and
        the handshake completes. It costs one round trip per connection. aioquic needs none.

        Chromium's ClientHello spans two datagrams, so it alone would not need one; what kept Chromium off
        qh3 was its zero-length connection id, which ``server_connection`` handles (docs/quic-stack.md §2, §4)."""
        return self.name == "qh3"

    def server_connection(self, connection: Any) -> Any:
        """The connection a new server-side protocol drives: aioquic's as its server built it; on qh3 the same
        connection as a ``ZeroLengthCidConnection`` (ingress/qh3_zero_cid.py), which also serves clients with
        a zero-length connection id, as Chromium is (docs/quic-stack.md §2), with shorter Python paths for
        what an established connection does per packet (``FastPathConnection``, ingress/qh3_fast_path.py)."""
        if self.name != "qh3":
            return connection
        from ingress.qh3_fast_path import FastPathConnection

        return FastPathConnection.replacing(connection)

    def close_event(self, quic: Any) -> Any:
        """The connection's ConnectionTerminated once it is closing (both keep it in ``_close_event``)."""
        return quic._close_event


_LOADED: dict[str, QuicStack] = {}


def load(name: str) -> QuicStack:
    """Import a stack by name (ValueError naming the choices for another name; ImportError if not installed)."""
    check_name(name)
    stack = _LOADED.get(name)
    if stack is not None:
        return stack
    protocol = importlib.import_module(f"{name}.asyncio.protocol")
    server = importlib.import_module(f"{name}.asyncio.server")
    configuration = importlib.import_module(f"{name}.quic.configuration")
    connection = importlib.import_module(f"{name}.quic.connection")
    quic_events = importlib.import_module(f"{name}.quic.events")
    h3 = importlib.import_module(f"{name}.h3.connection")
    h3_events = importlib.import_module(f"{name}.h3.events")
    package = importlib.import_module(name)
    stack = QuicStack(
        name=name,
        version=str(getattr(package, "__version__", "?")),
        QuicConnectionProtocol=protocol.QuicConnectionProtocol,
        QuicServer=server.QuicServer,
        serve=server.serve,
        QuicConfiguration=configuration.QuicConfiguration,
        H3Connection=h3.H3Connection,
        H3_ALPN=list(h3.H3_ALPN),
        stream_is_unidirectional=connection.stream_is_unidirectional,
        ConnectionTerminated=quic_events.ConnectionTerminated,
        ProtocolNegotiated=quic_events.ProtocolNegotiated,
        StopSendingReceived=quic_events.StopSendingReceived,
        StreamReset=quic_events.StreamReset,
        DatagramReceived=h3_events.DatagramReceived,
        DataReceived=h3_events.DataReceived,
        HeadersReceived=h3_events.HeadersReceived,
        WebTransportStreamDataReceived=h3_events.WebTransportStreamDataReceived,
    )
    _LOADED[name] = stack
    return stack
