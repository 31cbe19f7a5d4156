"""Short fuzz run (hypothesis) of the ingress framing parser: schemas/framing_codec.py.

The long run (>= 100,000 inputs) is bench/fuzz.py with the same target and corpus.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import framing_codec as framing
from tests import test_fuzz_targets
from tests.test_fuzz_targets import corpus, framing_target, known_bug_input

SEEDS = corpus("framing")


def _mutated(seed: bytes, edits: list[tuple[int, int]], cut: int | None) -> bytes:
    buf = bytearray(seed)
    for index, value in edits:
        buf[index % len(buf)] = value
    return bytes(buf[: cut % (len(buf) + 1)] if cut is not None else buf)


names = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
frames = st.builds(
    framing.Frame,
    kind=st.just(framing.Kind.VIDEO), codec=st.sampled_from([framing.Codec.H264, framing.Codec.VP8]),
    stream=names, seq=st.integers(0, 2**64 - 1), pts=st.integers(-(2**63), 2**63 - 1),
    capture_ts=st.floats(0, 1e15, allow_nan=False), payload=st.binary(max_size=64), keyframe=st.booleans(),
    width=st.integers(0, 0xFFFF), height=st.integers(0, 0xFFFF),
)
inputs = st.one_of(
    st.binary(max_size=256),
    st.builds(_mutated, st.sampled_from(SEEDS),
              st.lists(st.tuples(st.integers(0, 4096), st.integers(0, 255)), max_size=6),
              st.one_of(st.none(), st.integers(0, 4096))),
    frames.map(framing.serialize),
)


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inputs)
def test_framing_parser_never_crashes(data: bytes) -> None:
    framing_target(data)


@settings(max_examples=300, deadline=None)
@given(frames)
def test_valid_frames_survive_every_split(frame: framing.Frame) -> None:
    data = framing.serialize(frame) * 2
    for cut in range(0, len(data) + 1, max(1, len(data) // 7)):
        reader = framing.RecordReader()
        assert reader.feed(data[:cut]) + reader.feed(data[cut:]) == [frame, frame]
        reader.finish()


def test_delivery_with_empty_property_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Found by bench/fuzz.py: parse() accepted a Delivery property with an empty key that serialize()
    # refuses. parse() now refuses it too, so the round trip holds.
    monkeypatch.setattr(test_fuzz_targets, "TOLERATE_KNOWN_BUGS", False)
    with pytest.raises(framing.InvalidField, match="property key is empty"):
        framing.parse(known_bug_input("framing_delivery_empty_key.bin"))
    framing_target(known_bug_input("framing_delivery_empty_key.bin"))
