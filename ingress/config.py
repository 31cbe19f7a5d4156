"""One ingress's configuration (``IngressConfig``): what ``wtpulsar ingress`` flags and the Python API set.

Plain data with no behaviour beyond ``split_hostport``; every other ingress module may import it and it
imports none of them but the settings types it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ingress import quic_stack
from ingress.hls_feed import HlsSettings
from ingress.session import Limits

DEFAULT_STATE_DIR = Path(".wtpulsar") / "ingress"  # as `wtpulsar up` lays out its --state


@dataclass
class IngressConfig:
    listen: str = "127.0.0.1:4433"  # UDP, HTTP/3 WebTransport at /wt
    http: str = "127.0.0.1:8000"  # TCP: page, /health, /metrics, /cert-hash, /ws
    cert: Path | None = None
    key: Path | None = None
    broker_service_url: str = "pulsar://127.0.0.1:6650"
    broker_token: str | None = None  # for a broker that requires authentication (--broker-token, $PULSAR_TOKEN)
    tenant: str = "public"
    namespace: str = "wtpulsar"
    secret: bytes | None = None  # token HMAC key; None = <state_dir>/ingress-secret (created once)
    chat_signing_key: bytes | None = None  # signs chat-in messages for moderate (chat_signing); None: unsigned
    state_dir: Path = DEFAULT_STATE_DIR
    limits: Limits = field(default_factory=Limits)
    sessions_per_address: int = 16
    max_sessions: int = 1000
    stream_window: int = 512 * 1024  # bytes of read credit per stream beyond what was received (flow_gate)
    connection_window: int = 16 * 1024 * 1024  # initial QUIC max_data
    ack_delay: float = 0.005  # s; QUIC ACK coalescing on the ingress side (webtransport_server)
    # bytes of UDP payload per QUIC packet the ingress sends; None: the stack's own (aioquic 1200, qh3 1280).
    # Larger means fewer packets per frame but only where the path carries it (docs/fanout.md §6.2)
    max_datagram_size: int | None = None
    udp_gso: bool = True  # send a connection's packets in runs, one sendmsg each, where Linux allows (udp_batch)
    viewer_queue_bytes: int = 2 * 1024 * 1024  # unsent media per viewer stream before skipping to a keyframe
    page: Path | None = None  # a file served at / instead of the packaged page (ingress/page.py)
    broker_connect_timeout: float = 30.0
    # s without a packet from a WebTransport peer (QUIC idle timeout; keep-alive PINGs at a third of it)
    # or a WebSocket pong before its session ends and its streams get an end of stream ("timeout")
    session_timeout: float = 20.0
    # s: a room topic whose newest media message is older than this has no stream to join (its publisher
    # or ingress died without an end of stream); joiners wait for the next stream instead (viewer.JoinPoint)
    join_stale_after: float = 10.0
    # find a late joiner's start from a room topic's end (ingress/join_from_end.py) rather than reading the
    # topic from its start; join_window: messages first read back from the newest one
    join_from_end: bool = True
    join_window: int = 256
    # one of several worker processes on the same ports (`wtpulsar ingress --workers N`, ingress/workers.py)
    reuse_port: bool = False
    worker: int | None = None  # its number, shown by /health
    hls: HlsSettings = field(default_factory=HlsSettings)  # /hls/<room>/: window, part target, renditions
    # QUIC stack of the WebTransport side, aioquic or qh3 (ingress/quic_stack.py); $WTPULSAR_QUIC_STACK sets the default
    quic_stack: str = field(default_factory=quic_stack.default_name)


def split_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "0.0.0.0", int(port)
