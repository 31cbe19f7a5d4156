"""Random and mutated frames against the wire decoder and the connection core (in memory).

Every input must end in answers or a closed connection, never in an exception escaping the
core or an "internal error" (which would mean a handler crashed on input it should refuse).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.config import BrokerConfig
from broker.connection import ServerConnection
from broker.service import BrokerService
from broker.wire import FrameDecoder, FrameError

CORPUS = sorted((Path(__file__).parent / "fuzz_corpus" / "broker").glob("*.bin"))
SEEDS = [p.read_bytes() for p in CORPUS]
CONNECT = (Path(__file__).parent / "fuzz_corpus" / "broker" / "connect.bin").read_bytes()
SESSION = b"".join(p.read_bytes() for p in CORPUS if p.stem in ("producer", "send", "subscribe", "flow", "ack", "send"))


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(data)
    for index, value in flips:
        if buf:
            buf[index % len(buf)] = value
    if cut is not None and buf:
        buf = buf[: cut % (len(buf) + 1)]
    return bytes(buf)


inputs = st.one_of(
    st.binary(max_size=512),
    st.builds(
        mutate,
        st.sampled_from(SEEDS + [SESSION]),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
        st.one_of(st.none(), st.integers(0, 10_000)),
    ),
)


class Harness:
    def __init__(self) -> None:
        self.service = BrokerService(BrokerConfig(data_dir=None))
        self.sent: list[bytes] = []
        self.closed = False
        self.conn = ServerConnection(self.service, self.sent.append, self._close, "fuzz")

    def _close(self) -> None:
        self.closed = True


def test_corpus_covers_every_seed_kind() -> None:
    assert {p.stem for p in CORPUS} >= {"connect", "send", "subscribe", "ack", "flow", "seek"}


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=inputs)
def test_decoder_never_raises_anything_but_frame_error(data: bytes) -> None:
    decoder = FrameDecoder(1 << 20)
    try:
        for frame in decoder.feed(data):
            assert frame.command.IsInitialized()
    except FrameError:
        pass


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=inputs, split=st.integers(1, 64))
def test_connection_core_survives_fuzzed_sessions(data: bytes, split: int, caplog: pytest.LogCaptureFixture) -> None:
    harness = Harness()
    with caplog.at_level(logging.WARNING, logger="wtpulsar.broker.connection"):
        caplog.clear()
        harness.conn.data_received(CONNECT)
        for start in range(0, len(data), split):  # arbitrary TCP segmentation
            harness.conn.data_received(data[start : start + split])
        harness.service.sync()
    crashes = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert not crashes, crashes[0].getMessage()
    assert harness.sent, "CONNECT was not answered"
