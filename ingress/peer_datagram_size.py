"""Keep an aioquic connection's packets within what its peer said it receives (docs/fanout.md §6.2).

RFC 9000 §18.2: ``max_udp_payload_size`` is the largest UDP payload an endpoint is willing to receive.
aioquic 1.7.2 sends packets of its configured ``max_datagram_size`` and reads the peer's value only to
refuse one below 1200, so with ``wtpulsar ingress --max-datagram-size`` above 1200 a peer announcing
less would be sent packets it does not take. ``limit_to_peer`` lowers the connection's packet size to
the peer's value as its transport parameters arrive (before the server's first flight is built).
qh3 needs none of this: it hands the peer's value to its compiled core (qh3 2.1.0
``qh3/quic/connection.py``, where the transport parameters are applied).
"""

from __future__ import annotations

from typing import Any

SMALLEST = 1200  # RFC 9000 §14: every QUIC path carries this much


def peer_max_udp_payload(data: bytes) -> int | None:
    """The ``max_udp_payload_size`` in a peer's encoded transport parameters (None: not sent, or unreadable)."""
    from aioquic._buffer import Buffer
    from aioquic.quic.packet import pull_quic_transport_parameters

    try:
        value = pull_quic_transport_parameters(Buffer(data=data)).max_udp_payload_size
    except Exception:  # aioquic itself refuses the parameters with a precise error; nothing to apply here
        return None
    return None if value is None else int(value)


def limit_to_peer(quic: Any) -> None:
    """Wrap an aioquic QuicConnection's transport-parameter parsing so its packet size never exceeds the peer's
    ``max_udp_payload_size`` (and never goes below 1200)."""
    original = quic._parse_transport_parameters

    def parse(data: bytes, from_session_ticket: bool = False) -> None:
        original(data, from_session_ticket)
        limit = peer_max_udp_payload(data)
        if limit is not None and limit < quic._max_datagram_size:
            quic._max_datagram_size = max(SMALLEST, limit)

    quic._parse_transport_parameters = parse
