"""Pulsar binary framing, sans-I/O: bytes in, parsed frames out; commands in, bytes out.

Frame shapes (docs/pulsar-wire-protocol.md §1), all integers big-endian:
  simple:  total_size:u32 cmd_size:u32 BaseCommand
  payload: total_size:u32 cmd_size:u32 BaseCommand [0x0e01 crc32c:u32] meta_size:u32 MessageMetadata payload
The checksum covers everything after the crc field. The broker stores the bytes after the command
unchanged ("entry bytes") and forwards them as they are in MESSAGE frames.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import crc32c

from broker.proto import pulsar_wire_pb2 as pb

MAGIC_CRC32C = 0x0E01
MAGIC_BROKER_ENTRY_METADATA = 0x0E02
DEFAULT_MAX_MESSAGE_SIZE = 5 * 1024 * 1024  # bytes; Pulsar's maxMessageSize default
FRAME_PADDING = 10 * 1024  # bytes the real broker allows on top of maxMessageSize for headers

_HOT_COMMANDS = frozenset({6, 10, 11})  # SEND, ACK, FLOW: no string fields, checked by nothing costly
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")
_HEADER = struct.Struct(">II")


class FrameError(Exception):
    """The peer sent bytes that are not a valid Pulsar frame. The connection must be closed."""


@dataclass(slots=True)
class Frame:
    """One decoded frame. For SEND/MESSAGE, `entry` holds the bytes after the command."""

    command: pb.BaseCommand
    entry: bytes | None = None
    checksum_ok: bool = True
    metadata: pb.MessageMetadata | None = None
    payload_offset: int = 0  # offset of the payload inside `entry`


class FrameDecoder:
    """Accumulates bytes and yields whole frames. Never raises for a partial frame."""

    def __init__(self, max_frame_size: int = DEFAULT_MAX_MESSAGE_SIZE + FRAME_PADDING) -> None:
        self.max_frame_size = max_frame_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        self._buffer += data
        frames: list[Frame] = []
        buf = self._buffer
        pos = 0
        end = len(buf)
        while end - pos >= 4:
            (total,) = _U32.unpack_from(buf, pos)
            if total > self.max_frame_size:
                raise FrameError(f"frame of {total} bytes exceeds the limit of {self.max_frame_size} bytes")
            if total < 4:
                raise FrameError(f"frame size {total} is smaller than a command size field")
            if end - pos - 4 < total:
                break
            frames.append(parse_frame(bytes(buf[pos + 4 : pos + 4 + total])))
            pos += 4 + total
        if pos:
            del buf[:pos]
        return frames


def parse_frame(body: bytes) -> Frame:
    """Parse one frame without its leading total_size field."""
    (cmd_size,) = _U32.unpack_from(body, 0)
    if cmd_size == 0 or cmd_size > len(body) - 4:
        raise FrameError(f"command size {cmd_size} does not fit in a frame of {len(body)} bytes")
    command = pb.BaseCommand()
    try:
        command.ParseFromString(body[4 : 4 + cmd_size])
    except Exception as exc:  # protobuf raises DecodeError (and sometimes others) on garbage
        raise FrameError(f"undecodable command: {exc}") from exc
    if not command.IsInitialized():
        raise FrameError("command is missing required fields: " + ", ".join(command.FindInitializationErrors()))
    if command.type not in _HOT_COMMANDS and not strings_are_text(command):
        raise FrameError("command holds a string field that is not valid UTF-8")
    rest = 4 + cmd_size
    if rest == len(body):
        return Frame(command)
    return _parse_payload(command, body[rest:])


def _parse_payload(command: pb.BaseCommand, entry: bytes) -> Frame:
    pos = 0
    checksum_ok = True
    if len(entry) >= 2 and _U16.unpack_from(entry, 0)[0] == MAGIC_BROKER_ENTRY_METADATA:
        raise FrameError("clients may not send broker entry metadata")
    if len(entry) >= 6 and _U16.unpack_from(entry, 0)[0] == MAGIC_CRC32C:
        (expected,) = _U32.unpack_from(entry, 2)
        checksum_ok = crc32c.crc32c(entry[6:]) == expected
        pos = 6
    if len(entry) - pos < 4:
        raise FrameError("payload section too short for a metadata size")
    (meta_size,) = _U32.unpack_from(entry, pos)
    pos += 4
    if meta_size > len(entry) - pos:
        raise FrameError(f"metadata size {meta_size} exceeds the {len(entry) - pos} bytes left in the frame")
    metadata = pb.MessageMetadata()
    if checksum_ok:
        try:
            metadata.ParseFromString(entry[pos : pos + meta_size])
        except Exception as exc:
            raise FrameError(f"undecodable message metadata: {exc}") from exc
        if not metadata.IsInitialized():
            raise FrameError("message metadata is missing required fields")
        if not strings_are_text(metadata):
            raise FrameError("message metadata holds a string field that is not valid UTF-8")
    return Frame(command, entry, checksum_ok, metadata, pos + meta_size)


def strings_are_text(message: Any) -> bool:
    """protobuf hands back `bytes` for a proto2 string field holding invalid UTF-8: refuse those."""
    for field, value in message.ListFields():
        if field.type == field.TYPE_STRING:
            values = value if field.is_repeated else (value,)
            if any(not isinstance(v, str) for v in values):
                return False
        elif field.type == field.TYPE_MESSAGE:
            values = value if field.is_repeated else (value,)
            if not all(strings_are_text(v) for v in values):
                return False
    return True


def encode_command(command: pb.BaseCommand) -> bytes:
    data = command.SerializeToString()
    return _HEADER.pack(len(data) + 4, len(data)) + data


def encode_payload_command(command: pb.BaseCommand, entry: bytes) -> bytes:
    data = command.SerializeToString()
    return _HEADER.pack(len(data) + 4 + len(entry), len(data)) + data + entry


def build_entry(metadata: pb.MessageMetadata, payload: bytes, checksum: bool = True) -> bytes:
    """Entry bytes as a client would send them (used by tests and the fuzzers)."""
    meta = metadata.SerializeToString()
    body = _U32.pack(len(meta)) + meta + payload
    if not checksum:
        return body
    return _U16.pack(MAGIC_CRC32C) + _U32.pack(crc32c.crc32c(body)) + body


def parse_entry_metadata(entry: bytes) -> tuple[pb.MessageMetadata, int]:
    """Metadata and payload offset of stored entry bytes (which were validated on the way in)."""
    pos = 6 if len(entry) >= 6 and _U16.unpack_from(entry, 0)[0] == MAGIC_CRC32C else 0
    (meta_size,) = _U32.unpack_from(entry, pos)
    metadata = pb.MessageMetadata()
    metadata.ParseFromString(entry[pos + 4 : pos + 4 + meta_size])
    return metadata, pos + 4 + meta_size


def command(kind: int, **fields: object) -> pb.BaseCommand:
    """Build a BaseCommand whose sub-message is the field numbered like `kind` (docs/pulsar-wire-protocol.md §1)."""
    cmd = pb.BaseCommand(type=kind)
    field_name = _FIELD_FOR_TYPE[kind]
    sub = getattr(cmd, field_name)
    sub.SetInParent()
    for key, value in fields.items():
        if value is None:
            continue
        target = getattr(sub, key)
        if isinstance(value, list):
            if value and hasattr(value[0], "SerializeToString"):
                target.extend(value)  # repeated message
            else:
                target.extend(value)
        elif hasattr(value, "SerializeToString"):
            target.CopyFrom(value)
        else:
            setattr(sub, key, value)
    return cmd


def sub_command(cmd: pb.BaseCommand) -> Any:
    """The sub-message that matches `cmd.type`, or None when it is absent."""
    name = _FIELD_FOR_TYPE.get(cmd.type)
    if name is None or not cmd.HasField(name):
        return None
    return getattr(cmd, name)


def _field_for_type() -> dict[int, str]:
    mapping = {}
    for field in pb.BaseCommand.DESCRIPTOR.fields:
        if field.number != 1:
            mapping[field.number] = field.name
    return mapping


_FIELD_FOR_TYPE: dict[int, str] = _field_for_type()

T = pb.BaseCommand  # short alias for the Type enum values: T.SEND, T.MESSAGE, ...


def u64(value: int) -> int:
    """int64 as the uint64 the wire carries (-1 -> 2**64-1)."""
    return value & 0xFFFFFFFFFFFFFFFF


def s64(value: int) -> int:
    """uint64 from the wire back to the int64 every client means."""
    return value - (1 << 64) if value >= 1 << 63 else value
