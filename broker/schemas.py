"""Per-topic schema registry: versions, lookup and the compatibility check (docs/pulsar-wire-protocol.md §12).

Versions are 8-byte big-endian integers from 0. Compatibility follows Pulsar's default FULL
strategy for record schemas (JSON and Avro hold Avro record definitions): a new definition is
accepted when every field that one side has and the other lacks carries a default, so each
side can read the other's data. A different schema type is always incompatible.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass
from typing import Any

from broker.proto import pulsar_wire_pb2 as pb

RECORD_TYPES = (pb.Schema.Json, pb.Schema.Avro)


class IncompatibleSchema(Exception):
    pass


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    version: int
    type: int
    data: bytes
    properties: tuple[tuple[str, str], ...]
    timestamp: int = 0  # ms since the epoch when registered (0: saved before it was kept)

    @property
    def version_bytes(self) -> bytes:
        return struct.pack(">q", self.version)

    def to_proto(self, topic_name: str) -> pb.Schema:
        schema = pb.Schema(name=topic_name, schema_data=self.data, type=self.type)
        for key, value in self.properties:
            schema.properties.add(key=key, value=value)
        return schema

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "type": self.type, "data": self.data.hex(), "properties": list(self.properties),
                "timestamp": self.timestamp}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SchemaVersion:
        props = tuple((str(k), str(v)) for k, v in data.get("properties", []))
        return cls(int(data["version"]), int(data["type"]), bytes.fromhex(data["data"]), props, int(data.get("timestamp", 0)))


def _fields(definition: bytes) -> dict[str, bool] | None:
    """Field name -> has default, for an Avro record definition; None when not a record."""
    try:
        parsed = json.loads(definition.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(parsed, dict) or parsed.get("type") != "record" or not isinstance(parsed.get("fields"), list):
        return None
    result: dict[str, bool] = {}
    for field in parsed["fields"]:
        if isinstance(field, dict) and isinstance(field.get("name"), str):
            result[field["name"]] = "default" in field
    return result


def compatible(old: SchemaVersion, new_type: int, new_data: bytes) -> bool:
    if old.type != new_type:
        return False
    if new_type not in RECORD_TYPES or old.data == new_data:
        return True
    old_fields, new_fields = _fields(old.data), _fields(new_data)
    if old_fields is None or new_fields is None:
        return old.data == new_data
    added = set(new_fields) - set(old_fields)
    removed = set(old_fields) - set(new_fields)
    return all(new_fields[f] for f in added) and all(old_fields[f] for f in removed)


class SchemaRegistry:
    def __init__(self, versions: list[SchemaVersion] | None = None) -> None:
        self.versions: list[SchemaVersion] = versions or []

    @property
    def latest(self) -> SchemaVersion | None:
        return self.versions[-1] if self.versions else None

    def get(self, version: int | None) -> SchemaVersion | None:
        if version is None:
            return self.latest
        for item in self.versions:
            if item.version == version:
                return item
        return None

    def find(self, schema_type: int, data: bytes) -> SchemaVersion | None:
        for item in self.versions:
            if item.type == schema_type and item.data == data:
                return item
        return None

    def get_or_add(self, schema: pb.Schema, allow_add: bool = True) -> tuple[SchemaVersion, bool]:
        """The version of `schema`, registering it when new and compatible. (version, added)."""
        data = bytes(schema.schema_data)
        existing = self.find(schema.type, data)
        if existing is not None:
            return existing, False
        latest = self.latest
        if latest is not None and not compatible(latest, schema.type, data):
            type_name = pb.Schema.Type.Name(schema.type)
            raise IncompatibleSchema(
                f"schema of type {type_name} is incompatible with the topic's latest "
                f"{pb.Schema.Type.Name(latest.type)} schema (version {latest.version}, FULL compatibility)"
            )
        if not allow_add:
            raise IncompatibleSchema("the topic is in use and has no schema; a consumer cannot register one")
        props = tuple((kv.key, kv.value) for kv in schema.properties)
        version = SchemaVersion(len(self.versions), schema.type, data, props, int(time.time() * 1000))
        self.versions.append(version)
        return version, True
