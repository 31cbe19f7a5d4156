"""qh3 2.1.0 server connections that serve clients with a zero-length connection id, as Chromium's is
(docs/quic-stack.md §2 has the facts and sources).

A QUIC client may pick a zero-length connection id (RFC 9000 §5.1); Chromium does: its Initial packets
carry an empty Source Connection ID. qh3 2.1.0 mishandles that in two places, and each alone makes
every Chromium handshake fail:

1. ``QuicConnection._learn_remote_source_cid`` (qh3 ``qh3/quic/connection.py``) remembers the client's
   Source Connection ID for the TLS layer only when it is not empty, so the client's transport
   parameter ``initial_source_connection_id`` (empty) is compared with "none seen" and the server closes
   with TRANSPORT_PARAMETER_ERROR "initial_source_connection_id does not match" (RFC 9000 §7.3 requires
   the two to be equal, and an empty one equals an empty one).
2. The compiled core (qh3 ``src/quic/connection.rs``, the first-flight branch of ``receive_datagram``)
   adopts the client's Source Connection ID as the destination of its own packets only when it is not
   empty, so the server keeps addressing the client by the client's original Destination Connection ID.
   RFC 9000 §7.2: the server must use the client's Source Connection ID; Chromium drops long-header
   packets whose Destination Connection ID is not its own (empty) one, sees silence, and gives up after
   its 4 s handshake timeout.

``ZeroLengthCidConnection`` fixes both for one connection without touching qh3 globally:

- (1) its ``_learn_remote_source_cid`` also records an empty Source Connection ID of a long-header
  packet.
- (2) for a client whose first Initial has an empty Source Connection ID, the core is built the way
  qh3's own core tests pair a server with a client (``pair()`` in ``src/quic/connection.rs``): the
  server's connection id is the Destination Connection ID the client chose (so the core accepts the
  client's first packets, addressed to it), the peer's is empty, and the Initial keys, which the core
  would otherwise derive from the connection id it was given, are derived from the client's Destination
  Connection ID as RFC 9001 §5.2 defines and installed with the core's ``install_packet_key``.

Clients with a non-empty Source Connection ID (aioquic, qh3, ``wtpulsar publish``) take qh3's own path
unchanged.
"""

from __future__ import annotations

from typing import Any

from qh3._hazmat import pull_quic_header
from qh3.quic.connection import NetworkAddress, QuicConnection
from qh3.quic.crypto import CIPHER_SUITES, derive_key_iv_hp
from qh3.quic.packet import QuicPacketType, QuicProtocolVersion
from qh3.tls import CipherSuite, Epoch, cipher_suite_hash, hkdf_expand_label, hkdf_extract

# The salt of the Initial secret, per version: RFC 9001 §5.2 (version 1), RFC 9369 §3.3.1 (version 2).
INITIAL_SALTS = {
    int(QuicProtocolVersion.VERSION_1): bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a"),
    int(QuicProtocolVersion.VERSION_2): bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9"),
}
# Initial packets are protected with AEAD_AES_128_GCM and its header protection (RFC 9001 §5.2, §5.4.3).
INITIAL_SUITE = CipherSuite.AES_128_GCM_SHA256
MIN_INITIAL_DATAGRAM = 1200  # a server drops smaller datagrams carrying a client Initial (RFC 9000 §14.1)


def initial_keys(version: int, client_dcid: bytes, sender: str) -> tuple[bytes, bytes, bytes]:
    """(key, iv, hp) protecting the Initial packets that ``sender`` ("client" or "server") sends on a
    connection whose client chose ``client_dcid`` (RFC 9001 §5.2; labels as RFC 9369 §3.3.2 for v2)."""
    algorithm = cipher_suite_hash(INITIAL_SUITE)
    initial_secret = hkdf_extract(algorithm, INITIAL_SALTS[version], client_dcid)
    secret = hkdf_expand_label(algorithm, initial_secret, f"{sender} in".encode(), b"", 32)
    return derive_key_iv_hp(cipher_suite=INITIAL_SUITE, secret=secret, version=version)


class ZeroLengthCidConnection(QuicConnection):
    """qh3's server-side QuicConnection, corrected for clients with a zero-length connection id (module docstring)."""

    _client_dcid: bytes | None = None  # set when the client's first Initial has an empty Source Connection ID

    @classmethod
    def replacing(cls, connection: Any) -> ZeroLengthCidConnection:
        """The same server connection as ``connection`` (built by qh3's QuicServer, before its first datagram)."""
        fresh = cls(configuration=connection.configuration,
                    original_destination_connection_id=connection.original_destination_connection_id,
                    retry_source_connection_id=connection._retry_source_connection_id,
                    session_ticket_fetcher=connection._session_ticket_fetcher,
                    session_ticket_handler=connection._session_ticket_handler)
        fresh.host_cid = connection.host_cid  # QuicServer routes this connection's packets by it
        return fresh

    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float) -> None:
        if self._core is None and not self._is_client:
            self._note_zero_length_client(data)
        super().receive_datagram(data, addr, now)

    def _note_zero_length_client(self, data: bytes) -> None:
        """Before the core exists: take the client's Destination Connection ID as ours when its Source
        Connection ID is empty (the same checks qh3 makes before it creates a core, plus a length our
        QuicServer can route short-header packets by)."""
        if len(data) < MIN_INITIAL_DATAGRAM:
            return
        try:
            header = pull_quic_header(data, 0, self._configuration.connection_id_length)
        except ValueError:
            return
        version, packet_type, destination_cid, source_cid = header[0], header[1], header[3], header[4]
        if (packet_type != int(QuicPacketType.INITIAL) or version not in self._configuration.supported_versions
                or version not in INITIAL_SALTS or source_cid
                or len(destination_cid) != self._configuration.connection_id_length):
            return
        self._client_dcid = destination_cid
        self.host_cid = destination_cid

    def _create_core(self, remote_addr: NetworkAddress, initial_dcid: bytes, now: float) -> None:
        if self._is_client or self._client_dcid is None or initial_dcid != self._client_dcid:
            super()._create_core(remote_addr, initial_dcid, now)
            return
        # the peer's connection id is the empty one; the Initial keys come from the client's choice
        super()._create_core(remote_addr, b"", now)
        assert self._core is not None and self._version is not None
        hp_name, aead_name = CIPHER_SUITES[INITIAL_SUITE]  # qh3 lists header protection first
        for direction, sender in (("send", "server"), ("receive", "client")):
            key, iv, hp = initial_keys(self._version, initial_dcid, sender)
            self._core.install_packet_key(direction, int(Epoch.INITIAL), (aead_name.decode(), hp_name.decode()),
                                          key, iv, hp, 0)

    def _learn_remote_source_cid(self, data: bytes) -> None:
        super()._learn_remote_source_cid(data)
        if self._handshake_complete or self._tls is None or self._tls.remote_initial_source_connection_id is not None:
            return
        try:
            header = pull_quic_header(data, 0, self._configuration.connection_id_length)
        except ValueError:
            return
        if header[0] is not None and header[4] == b"":  # a long header (it has a version) with an empty one
            self._tls.remote_initial_source_connection_id = b""
