"""qh3's server connection with shorter Python paths for what a fan-out does per packet (docs/fanout.md §7).

qh3 2.1.0 keeps the transport in its compiled core; its Python ``QuicConnection`` wraps each call. On the
three calls an egress makes per packet or per frame, that wrapper does work the ingress does not need
once a connection is established and nothing is logging it (``quic_logger`` unset, as in the ingress):

- ``datagrams_to_send``: for every packet it reads the packet headers again only to hand them to the
  logger, which then does nothing. Here: the core's ``poll_transmit`` until it returns None, nothing else.
- ``receive_datagram``: it splits a datagram into its coalesced packets by parsing each header, and
  checks for a Version Negotiation or Retry packet (client side only). A short-header packet runs to the
  end of its datagram, and only long-header packets carry those two (docs/fanout.md §7.1). Here: a
  datagram starting with a short header goes to the core whole.
- ``send_stream_data``: it converts the buffer and records the stream as locally opened. Here: bytes on
  a stream already recorded go to the core as they are.

Anything else (handshake, long headers, a logger, other buffers, a stream not yet recorded) takes qh3's
own path. Errors of the core come out as on qh3's path: its RuntimeError as ``QuicConnectionError``, the
rest (e.g. ValueError for a write after the stream's FIN) as raised (docs/fanout.md §7.2).
"""

from __future__ import annotations

from typing import Any

from qh3.quic.connection import NetworkAddress, QuicConnectionError
from qh3.quic.packet import QuicErrorCode

from ingress.qh3_zero_cid import ZeroLengthCidConnection

LONG_HEADER_BIT = 0x80  # the first bit of a packet: 1 for a long header, 0 for a short one (docs/fanout.md §7.1)


def is_short_header(data: bytes) -> bool:
    """Whether a datagram starts with a short-header (1-RTT) packet."""
    return bool(data) and not data[0] & LONG_HEADER_BIT


def _core_error(exc: RuntimeError) -> QuicConnectionError:
    """The error qh3's own wrapper raises for a failure of its core (``QuicConnection._call_core``)."""
    return QuicConnectionError(QuicErrorCode.INTERNAL_ERROR, None, str(exc))


class FastPathConnection(ZeroLengthCidConnection):
    """The ingress's server connection on qh3: ``ZeroLengthCidConnection`` with the fast paths above."""

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]:
        core = self._core
        if core is None or self._quic_logger is not None:
            return super().datagrams_to_send(now)
        poll = core.poll_transmit
        datagrams: list[tuple[bytes, NetworkAddress]] = []
        try:
            transmit = poll(now)
            while transmit is not None:
                datagrams.append((transmit[0], transmit[1]))
                transmit = poll(now)
        except RuntimeError as exc:
            raise _core_error(exc) from exc
        return datagrams

    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float) -> None:
        core = self._core
        if (core is None or not self._handshake_complete or self._quic_logger is not None
                or self._is_client or not is_short_header(data)):
            super().receive_datagram(data, addr, now)
            return
        address = self._normalize_address(addr)
        try:
            core.receive_datagram(data, address, now, len(data))
        except RuntimeError as exc:
            raise _core_error(exc) from exc
        # qh3 would next learn the peer's source connection id (long headers only, before the handshake
        # completes) or log a dropped packet (no logger): nothing to do for an established connection.
        self._drain_core()

    def send_stream_data(self, stream_id: int, data: Any, end_stream: bool = False) -> None:
        core = self._core
        if (core is None or not self._handshake_complete or type(data) is not bytes
                or stream_id not in self._created_local_stream_ids):
            super().send_stream_data(stream_id, data, end_stream)
            return
        try:
            core.send_stream(stream_id, data, end_stream)
        except RuntimeError as exc:
            raise _core_error(exc) from exc
