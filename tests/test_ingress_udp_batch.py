"""ingress/udp_batch.py: runs of datagrams for UDP GSO, and that a receiver gets exactly the datagrams sent."""

from __future__ import annotations

import asyncio
import socket
import uuid
from pathlib import Path
from typing import Any

import pytest

from ingress import quic_stack
from ingress.udp_batch import MAX_SEGMENTS, BatchSender, Run, gso_available, plan

A, B = ("127.0.0.1", 5000), ("127.0.0.1", 5001)


def test_plan_joins_equal_datagrams_to_one_address_with_a_shorter_last_one() -> None:
    frame = [(b"a" * 1200, A), (b"b" * 1200, A), (b"c" * 1200, A), (b"d" * 300, A)]
    assert plan(frame) == [Run(A, 1200, (b"a" * 1200, b"b" * 1200, b"c" * 1200, b"d" * 300))]


def test_plan_starts_a_new_run_on_another_address_a_larger_datagram_or_after_a_short_one() -> None:
    datagrams = [(b"1" * 100, A), (b"2" * 100, B), (b"3" * 50, B), (b"4" * 50, B), (b"5" * 80, B), (b"6" * 80, B)]
    assert plan(datagrams) == [
        Run(A, 100, (b"1" * 100,)),
        Run(B, 100, (b"2" * 100, b"3" * 50)),  # a shorter one ends its run
        Run(B, 50, (b"4" * 50,)),
        Run(B, 80, (b"5" * 80, b"6" * 80)),
    ]


def test_plan_keeps_runs_inside_the_kernels_segment_and_size_limits() -> None:
    many = [(bytes([i % 256]) * 10, A) for i in range(MAX_SEGMENTS + 3)]
    runs = plan(many)
    assert [len(r.datagrams) for r in runs] == [MAX_SEGMENTS, 3]
    big = [(b"x" * 1400, A)] * 50  # 70,000 bytes: more than one UDP datagram may hold
    sizes = [sum(len(d) for d in r.datagrams) for r in plan(big)]
    assert sizes == [46 * 1400, 4 * 1400] and max(sizes) <= 65507
    assert [d for r in plan(big) for d in r.datagrams] == [d for d, _ in big]


class _Transport:
    """Stands in for asyncio's datagram transport: records what it is handed."""

    def __init__(self, backlog: int = 0) -> None:
        self.sent: list[tuple[bytes, Any]] = []
        self.backlog = backlog

    def sendto(self, data: bytes, addr: Any) -> None:
        self.sent.append((data, addr))

    def get_write_buffer_size(self) -> int:
        return self.backlog


def _receiver() -> socket.socket:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(2)
    return rx


@pytest.mark.skipif(not gso_available(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)),
                    reason="this kernel has no UDP_SEGMENT (Linux >= 4.18)")
def test_a_run_sent_with_gso_arrives_as_the_same_datagrams_in_order() -> None:
    rx, tx = _receiver(), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        to = rx.getsockname()
        frame = [(bytes([i]) * 1200, to) for i in range(5)] + [(b"z" * 333, to)]
        transport = _Transport()
        sender = BatchSender(tx, transport)
        sender.send(frame)
        got = [rx.recvfrom(65536)[0] for _ in frame]
        assert got == [d for d, _ in frame]
        assert (sender.calls, sender.segmented, transport.sent) == (1, 6, [])
    finally:
        rx.close()
        tx.close()


def test_without_gso_or_behind_a_backlog_every_datagram_goes_through_the_transport_in_order() -> None:
    frame = [(b"a" * 1200, A), (b"b" * 1200, A), (b"c" * 10, A)]
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        plain = _Transport()
        BatchSender(tx, plain, gso=False).send(frame)
        busy = _Transport(backlog=1)  # asyncio already queues datagrams: a direct send would overtake them
        BatchSender(tx, busy, gso=True).send(frame)
        assert plain.sent == frame and busy.sent == frame
    finally:
        tx.close()


def test_a_refused_gso_send_falls_back_to_the_transport_and_stays_off() -> None:
    class Refusing:
        def sendmsg(self, *args: Any) -> int:
            raise OSError(5, "Input/output error")  # EIO: what a device without segmentation answers

    frame = [(b"a" * 1200, A), (b"b" * 1200, A)]
    transport = _Transport()
    sender = BatchSender(Refusing(), transport, gso=True)  # type: ignore[arg-type]  # only sendmsg is used
    sender.send(frame)
    sender.send(frame)
    assert (sender.gso, transport.sent, sender.calls) == (False, frame + frame, 0)


def test_a_full_socket_buffer_leaves_the_run_to_the_transport() -> None:
    class Full:
        def sendmsg(self, *args: Any) -> int:
            raise BlockingIOError(11, "Resource temporarily unavailable")

    frame = [(b"a" * 1200, A), (b"b" * 700, A)]
    transport = _Transport()
    sender = BatchSender(Full(), transport, gso=True)  # type: ignore[arg-type]  # only sendmsg is used
    sender.send(frame)
    assert (sender.gso, transport.sent) == (True, frame)


@pytest.mark.parametrize("max_datagram_size", [None, 1452])
def test_the_ingress_sends_a_viewers_frames_in_gso_runs_and_the_viewer_reads_them(
        broker, tmp_path, max_datagram_size) -> None:
    """Through a real ingress: fragments of several packets each reach a WebTransport viewer whole and in
    order, and the server's sender sent them in runs (it counts them) of packets of the configured size
    (the stack's own by default, IngressConfig.max_datagram_size otherwise)."""
    if not gso_available(socket.socket(socket.AF_INET, socket.SOCK_DGRAM)):
        pytest.skip("this kernel has no UDP_SEGMENT: the ingress sends datagram by datagram")
    from unittest import mock

    from clients.webtransport import open_webtransport
    from ingress import webtransport_server
    from schemas import framing_codec as f
    from tests.ingress_support import ingress
    from tests.test_fanout import fragment, init, produce

    room = "g" + uuid.uuid4().hex[:10]
    frames = [init()] + [fragment(n, key=n % 10 == 0) for n in range(30)]
    frames = [type(item)(item.kind, item.properties, item.payload * 1000, item.published_ms) for item in frames]
    expected = [item.payload for item in frames]

    class Counting(BatchSender):  # the class under test, counting the packet sizes of its runs
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            senders.append(self)
            self.segments: set[int] = set()

        def _send_run(self, run: Run) -> None:
            self.segments.add(run.segment)
            super()._send_run(run)

    senders: list[Counting] = []

    async def main() -> None:
        with mock.patch.object(webtransport_server, "BatchSender", Counting):
            async with ingress(tmp_path, broker_service_url=broker.service_url,
                               max_datagram_size=max_datagram_size) as h:
                token = h.issue_token(room, "v", "viewer")
                async with open_webtransport(f"{h.wt_url}?token={token}&mode=view&kinds=video", timeout=30) as c:
                    assert c.state.status == 200
                    topic = f"room-{room}-video-360p"
                    while h.app.egress.feeds.get(topic) is None or not h.app.egress.feeds[topic].fanout.caught_up:
                        await asyncio.sleep(0.05)
                    await asyncio.to_thread(produce, broker.service_url, topic, frames)

                    def got(state: Any) -> list[bytes]:
                        records = [(sid, r.payload) for sid, r in state.records if isinstance(r, f.Delivery)]
                        return [payload for _, payload in sorted(records, key=lambda rec: rec[0])]

                    await c.wait_for(lambda s: len(got(s)) >= len(expected), 60)
                    assert got(c.state) == expected

    asyncio.run(asyncio.wait_for(main(), 120))
    assert len(senders) == 1 and senders[0].gso
    assert senders[0].calls > 0 and senders[0].segmented >= 2 * senders[0].calls
    largest = max(senders[0].segments)
    if quic_stack.default_name() == "qh3":  # qh3 2.1.0: its own default (1280); it fills packets to just under a raised size
        assert largest == 1280 if max_datagram_size is None else 1280 < largest <= max_datagram_size
    else:  # aioquic fills every full packet of a multi-packet record to its size
        assert largest == (max_datagram_size or 1200)


def test_max_datagram_size_flag_reaches_the_config_and_each_worker_and_refuses_bad_sizes(capsys) -> None:
    from ingress.cli import config_from_args
    from ingress.workers import worker_argv
    from wtpulsar.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["ingress", "--max-datagram-size", "1452"])
    assert config_from_args(args).max_datagram_size == 1452
    argv = worker_argv(args, "127.0.0.1:1", "127.0.0.1:2", Path("c"), Path("k"), 0)
    assert argv[argv.index("--max-datagram-size") + 1] == "1452"
    assert parser.parse_args(["ingress"]).max_datagram_size is None
    for bad, words in (("1199", "at least 1200"), ("65528", "at most 65527"), ("big", "a whole number")):
        with pytest.raises(SystemExit) as exit_info:
            parser.parse_args(["ingress", "--max-datagram-size", bad])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "--max-datagram-size" in err and words in err, err
