"""Identity over raw bytes, with the pass-through serde the pipeline's functions use (bench/localrun)."""

from pulsar import SerDe


class RawBytes(SerDe):
    def serialize(self, input):  # noqa: A002
        return bytes(input)

    def deserialize(self, input_bytes):
        return input_bytes


class Identity:
    def process(self, input, context):  # noqa: A002
        return input
