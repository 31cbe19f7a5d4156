"""A SerDe that hands the function the message bytes exactly as they arrived.

Pulsar's default `serde.IdentitySerDe` turns UTF-8-looking payloads into `int`/`float`/`str`
(docs/pulsar-functions.md §1.7), which would corrupt video frames that happen to decode as text.
Functions name this class in `inputSpecs[topic].serdeClassName` and in `publish(...)` calls.
It ships inside every function package: a Pulsar worker has nothing of ours installed.
"""

from __future__ import annotations

from pulsar import SerDe


class BytesSerDe(SerDe):
    """bytes in, bytes out; `str` is encoded as UTF-8 on the way out."""

    def serialize(self, input: bytes | bytearray | memoryview | str) -> bytes:  # noqa: A002
        if isinstance(input, str):
            return input.encode("utf-8")
        if isinstance(input, bytes | bytearray | memoryview):
            return bytes(input)
        raise TypeError(f"BytesSerDe cannot serialize {type(input).__name__}; give it bytes or str")

    def deserialize(self, input_bytes: bytes) -> bytes:
        return bytes(input_bytes)
