"""The QUIC stack switch (ingress/quic_stack.py) and qh3's backpressure by held packets (ingress/datagram_hold.py)."""

from __future__ import annotations

import importlib

import pytest

from ingress import quic_stack
from ingress.cli import config_from_args
from ingress.datagram_hold import DatagramHold
from wtpulsar.cli import build_parser

A = ("127.0.0.1", 5000)


def test_hold_passes_datagrams_through_until_paused() -> None:
    hold = DatagramHold(limit=100)
    assert hold.offer(b"a" * 40, A, 0.0) == [(b"a" * 40, A)]
    assert hold.set_paused(True, 1.0) == []
    assert hold.offer(b"b" * 40, A, 1.1) == []
    assert hold.offer(b"c" * 40, A, 1.2) == []
    assert hold.offer(b"d" * 40, A, 1.3) == []  # over the limit: dropped, the peer retransmits
    assert (hold.held_bytes, hold.dropped) == (80, 1)
    assert hold.set_paused(False, 1.4) == [(b"b" * 40, A), (b"c" * 40, A)]
    assert (hold.held_bytes, list(hold.held)) == (0, [])
    assert hold.offer(b"e", A, 1.5) == [(b"e", A)]


def test_hold_trickles_one_datagram_per_interval_while_paused() -> None:
    hold = DatagramHold(limit=1000, trickle_every=1.0)
    hold.set_paused(True, 10.0)
    assert hold.offer(b"1", A, 10.5) == []
    assert hold.offer(b"2", A, 10.9) == []
    assert hold.trickle(10.99) == []
    assert hold.offer(b"3", A, 11.0) == [(b"1", A)]  # a second after the pause began
    assert hold.trickle(11.5) == []
    assert hold.trickle(12.0) == [(b"2", A)]
    assert hold.set_paused(False, 12.1) == [(b"3", A)]
    assert hold.trickle(20.0) == []  # not paused: nothing is held


def test_pausing_twice_keeps_the_trickle_clock() -> None:
    hold = DatagramHold(limit=1000, trickle_every=1.0)
    hold.set_paused(True, 0.0)
    hold.offer(b"x", A, 0.1)
    hold.set_paused(True, 0.9)
    assert hold.trickle(1.0) == [(b"x", A)]


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[int, bytes]] = []

    def send_datagram(self, flow: int, data: bytes) -> None:
        self.sent.append((flow, data))


@pytest.mark.parametrize("name", quic_stack.STACKS)
def test_datagrams_name_the_session_by_its_stream_id_on_both_stacks(name: str) -> None:
    """aioquic's H3 datagram API speaks stream ids, qh3's the wire's quarter stream id (RFC 9297 §2.1)."""
    stack = quic_stack.load(name)
    for session_id in (0, 4, 8, 400):
        if name == "qh3":
            event = stack.DatagramReceived(data=b"x", flow_id=session_id // 4)
        else:
            event = stack.DatagramReceived(data=b"x", stream_id=session_id)
        assert stack.datagram_session(event) == session_id
        h3 = _Recorder()
        stack.send_datagram(h3, session_id, b"y")
        assert h3.sent == [(session_id // 4 if name == "qh3" else session_id, b"y")]


@pytest.mark.parametrize("name", quic_stack.STACKS)
def test_a_datagram_round_trips_through_each_stacks_h3_codec(name: str) -> None:
    """What send_datagram puts on the wire, the same stack's receiver maps back to the same session."""
    stack = quic_stack.load(name)

    class Quic:
        frames: list[bytes] = []

        def send_datagram_frame(self, data: bytes) -> None:
            self.frames.append(data)

    h3 = stack.H3Connection.__new__(stack.H3Connection)
    h3._quic = Quic()
    stack.send_datagram(h3, 8, b"payload")
    frame = Quic.frames[-1]
    assert frame[0] == 2  # RFC 9297: quarter stream id 8 / 4 = 2, a one-byte varint, on both stacks
    (event,) = h3._receive_datagram(frame)
    assert stack.datagram_session(event) == 8 and event.data == b"payload"


def test_unknown_stack_names_are_refused_with_the_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match=r"--quic-stack 'quiche': use one of aioquic, qh3"):
        quic_stack.load("quiche")
    monkeypatch.setenv(quic_stack.ENV, "msquic")
    with pytest.raises(ValueError, match=r"\$WTPULSAR_QUIC_STACK 'msquic': use one of aioquic, qh3"):
        quic_stack.default_name()
    monkeypatch.setenv(quic_stack.ENV, "aioquic")
    assert quic_stack.default_name() == "aioquic"
    monkeypatch.delenv(quic_stack.ENV)
    assert quic_stack.default_name() == "qh3"


def test_cli_flag_sets_the_stack(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(quic_stack.ENV, raising=False)
    parser = build_parser()
    assert config_from_args(parser.parse_args(["ingress", "--secret", "s" * 40])).quic_stack == "qh3"
    assert config_from_args(parser.parse_args(["ingress", "--secret", "s" * 40, "--quic-stack", "aioquic"])).quic_stack == "aioquic"
    with pytest.raises(SystemExit):
        parser.parse_args(["ingress", "--quic-stack", "quiche"])


def test_backpressure_and_datagrams_on_qh3(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The normal suite runs on aioquic; these run the held-packet gate and datagram numbering on qh3 too
    (the whole WebTransport suite runs on qh3 with WTPULSAR_QUIC_STACK=qh3)."""
    from tests import test_ingress_webtransport as wt

    monkeypatch.setenv(quic_stack.ENV, "qh3")
    wt.test_backpressure_stops_reading_until_broker_acks(tmp_path / "bp")
    wt.test_datagram_audio_is_published(tmp_path / "dg")


@pytest.mark.parametrize("name", quic_stack.STACKS)
def test_keepalive_stops_once_the_connection_is_closing(name: str) -> None:
    """The keepalive timer can fire after the connection began closing and before ConnectionTerminated arrives:
    qh3 then refuses a PING ("connection is closed"), which must not escape into the event loop."""
    from types import SimpleNamespace

    from ingress.webtransport_server import IngressProtocol

    stack = quic_stack.load(name)
    configuration = stack.QuicConfiguration(is_client=True, alpn_protocols=stack.H3_ALPN)
    quic = importlib.import_module(f"{name}.quic.connection").QuicConnection(configuration=configuration)
    quic.connect(A, now=1.0)
    quic.close()
    calls: list[str] = []
    proto = SimpleNamespace(stack=stack, _quic=quic, _keepalive_every=1.0, transmit=lambda: calls.append("transmit"),
                            _loop=SimpleNamespace(call_later=lambda *args: calls.append("call_later")))
    IngressProtocol._ping(proto)  # type: ignore[arg-type]  # a stand-in with the attributes _ping reads
    assert calls == []
