"""Names that could reach a topic outside the namespace are refused, trailing newlines included."""

from __future__ import annotations

import pytest

from ingress.names import check_name
from schemas import framing_codec as framing


@pytest.mark.parametrize("value", ["lobby\n", "a/b", "../x", "", "x" * 65, "persistent://evil/ns/t", "röom"])
def test_bad_names_are_refused(value: str) -> None:
    with pytest.raises(ValueError):
        check_name("room", value)


def test_good_name_passes() -> None:
    assert check_name("room", "lobby-1_A") == "lobby-1_A"


def test_framing_refuses_newline_suffixed_ids() -> None:
    with pytest.raises(framing.InvalidField, match="must match"):
        framing._check_name("stream", "cam\n")
    assert framing._check_name("stream", "cam") == b"cam"
