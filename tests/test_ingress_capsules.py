from __future__ import annotations

import pytest

from ingress import capsules


@pytest.mark.parametrize("value", [0, 63, 64, 16383, 16384, 2**30 - 1, 2**30, 2**62 - 1])
def test_varint_round_trip(value: int) -> None:
    data = capsules.encode_varint(value)
    assert capsules.decode_varint(data, 0) == (value, len(data))
    assert capsules.decode_varint(data[:-1], 0) is None


def test_close_capsule_matches_chrome_bytes() -> None:
    # docs/media-and-webtransport.md §1.7: Chrome's close {closeCode: 42, reason: 'bye'}
    assert capsules.close_capsule(42, "bye") == b"\x68\x43\x07" + (42).to_bytes(4, "big") + b"bye"


def test_reader_skips_grease_and_reassembles() -> None:
    grease = capsules.encode_varint(0x29 * 0x1F + 0x17) + capsules.encode_varint(3) + b"abc"
    data = grease + capsules.close_capsule(4001, "token missing")
    reader = capsules.CapsuleReader()
    out = []
    for i in range(len(data)):
        out += reader.feed(data[i:i + 1])
    assert out == [capsules.SessionClosed(4001, "token missing")]


def test_oversized_capsule_refused() -> None:
    reader = capsules.CapsuleReader(max_capsule=10)
    with pytest.raises(ValueError, match="exceeds"):
        reader.feed(capsules.encode_varint(0x2843) + capsules.encode_varint(11))


def test_reason_capped_at_1024_bytes_without_splitting_utf8() -> None:
    data = capsules.close_capsule(1, "é" * 600)
    closed = capsules.CapsuleReader().feed(data)[0]
    assert len(closed.reason.encode()) <= 1024 and set(closed.reason) == {"é"}


def test_wt_error_code_mapping() -> None:
    # docs/media-and-webtransport.md §1.7: app code 7 arrived as 0x52e4a40fa8e2
    assert capsules.wt_error_code(7) == 0x52E4A40FA8E2
    assert capsules.wt_error_code(0x1E) == 0x52E4A40FA8DB + 0x1E + 1
