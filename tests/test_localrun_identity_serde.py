"""FastIdentitySerDe returns exactly what the official IdentitySerDe returns (localrun/identity_serde.py)."""

from __future__ import annotations

import cmath
import math

from hypothesis import given, settings
from hypothesis import strategies as st
from pulsar.functions.serde import IdentitySerDe

from localrun.identity_serde import FastIdentitySerDe
from localrun.loader import load_serde

OFFICIAL = IdentitySerDe()
FAST = FastIdentitySerDe()
NUMBERISH = st.text(alphabet=" \t\n\x0b\x0c\r\x1c\x1f0123456789+-._()eEjJinfatyINFATY:x\u0663\u00a0", max_size=12)


def same(a: object, b: object) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, complex) and cmath.isnan(a):
        return isinstance(b, complex) and cmath.isnan(b)
    return a == b


def check(raw: bytes) -> None:
    expected, got = OFFICIAL.deserialize(raw), FAST.deserialize(raw)
    assert same(expected, got), (raw, expected, got)


@given(NUMBERISH)
@settings(max_examples=3000, deadline=None)
def test_number_like_text(text: str) -> None:
    check(text.encode("utf-8"))


@given(st.text(max_size=40))
@settings(max_examples=1000, deadline=None)
def test_any_text(text: str) -> None:
    check(text.encode("utf-8"))


@given(st.binary(max_size=40))
@settings(max_examples=1000, deadline=None)
def test_any_bytes(raw: bytes) -> None:
    check(raw)


def test_examples_of_each_branch() -> None:
    cases = {b"12": 12, b" -7 ": -7, b"1_000": 1000, b"1.5": 1.5, b"1e3": 1000.0, b"(1+2j)": 1 + 2j,
             b"\xd9\xa3": 3, b"hello": "hello", b"0:xxxx": "0:xxxx", b"\xff\xfe": b"\xff\xfe"}
    for raw, value in cases.items():
        check(raw)
        assert same(FAST.deserialize(raw), value), raw
    assert math.isnan(FAST.deserialize(b"nan")) and FAST.deserialize(b" Infinity ") == math.inf


def test_loader_uses_it_for_the_default_only() -> None:
    assert type(load_serde("")) is FastIdentitySerDe
    assert type(load_serde("serde.IdentitySerDe")) is FastIdentitySerDe
    assert type(load_serde("pulsar.functions.serde.PickleSerDe")).__name__ == "PickleSerDe"
    assert FAST.serialize(5) == OFFICIAL.serialize(5) == b"5"
