"""deploy/pulsar_schema.py: JSON Schema files become the Avro records Pulsar's JSON schema type
carries; real payloads that the JSON Schema accepts are valid records of the translation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastavro
import jsonschema
import pytest

from deploy.pulsar_schema import SchemaConversionError, avro_from_json_schema, schema_payload

ROOT = Path(__file__).resolve().parent.parent
CHAT = {"room": "r1", "user": "alice", "msg_id": "m-1", "text": "hello", "sent_at": 1700000000000.5}
VERDICT = {"v": 1, "msg_id": "m-1", "room": "r1", "user": "alice", "action": "mask", "rules": ["profanity"],
           "reason": "masked", "flagged": False, "decided_at": 1700000000001, "masked_text": "****"}  # fmt: skip


@pytest.mark.parametrize(("file", "sample"), [("chat.schema.json", CHAT), ("verdict.schema.json", VERDICT)])
def test_repo_schemas_translate_to_avro_that_accepts_their_payloads(file: str, sample: dict[str, Any]) -> None:
    path = ROOT / "schemas" / file
    if not path.exists():
        pytest.skip(f"schemas/{file} not there")
    document = json.loads(path.read_text())
    jsonschema.validate(sample, document)  # the sample is a real payload
    payload = schema_payload(path)
    assert payload["type"] == "JSON" and payload["properties"] == {"source": file}
    parsed = fastavro.parse_schema(json.loads(payload["schema"]))
    assert isinstance(parsed, dict), parsed  # a record schema
    record = {field["name"]: sample.get(field["name"]) for field in parsed["fields"]}
    assert fastavro.validation.validate(record, parsed)


def test_optional_and_nullable_fields() -> None:
    avro = avro_from_json_schema({
        "title": "thing", "type": "object", "required": ["a", "b"],
        "properties": {"a": {"type": "integer"}, "b": {"type": ["string", "null"]}, "c": {"type": "boolean"},
                       "d": {"type": "object", "additionalProperties": {"type": "number"}},
                       "e": {"enum": ["x", "y"]}, "f": {"type": "object", "properties": {"g": {"type": "string"}}}},
    }, "thing.schema.json")  # fmt: skip
    assert avro == {"type": "record", "name": "Thing", "namespace": "wtpulsar", "fields": [
        {"name": "a", "type": "long"},
        {"name": "b", "type": ["null", "string"]},
        {"name": "c", "type": ["null", "boolean"], "default": None},
        {"name": "d", "type": ["null", {"type": "map", "values": "double"}], "default": None},
        {"name": "e", "type": ["null", "string"], "default": None},
        {"name": "f", "type": ["null", {"type": "record", "name": "F", "namespace": "wtpulsar",
                                        "fields": [{"name": "g", "type": ["null", "string"], "default": None}]}],
         "default": None},
    ]}  # fmt: skip
    fastavro.parse_schema(avro)


@pytest.mark.parametrize(("document", "message"), [
    ({"type": "array", "items": {}}, "top level should be an object schema"),
    ({"type": "object", "properties": {"x": {"type": "array"}}}, r"\$.x: an array needs `items`"),
    ({"type": "object", "properties": {"x": {"type": "object"}}}, r"\$.x: an object needs `properties`"),
    ({"type": "object", "properties": {"x-y": {"type": "string"}}}, r"\$.x-y: not a legal Avro field name"),
    ({"type": "object", "properties": {"x": {"oneOf": []}}}, r"\$.x: type None has no Avro equivalent"),
    ({"type": "object", "required": ["z"], "properties": {}}, "required z not in properties"),
])  # fmt: skip
def test_unsupported_constructs_are_named(document: dict[str, Any], message: str) -> None:
    with pytest.raises(SchemaConversionError, match=f"bad.schema.json: .*{message}"):
        avro_from_json_schema(document, "bad.schema.json")


def test_avsc_passes_through_as_avro(tmp_path: Path) -> None:
    record = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "int"}]}
    (tmp_path / "r.avsc").write_text(json.dumps(record))
    assert schema_payload(tmp_path / "r.avsc") == {"type": "AVRO", "schema": json.dumps(record, separators=(",", ":")),
                                                   "properties": {"source": "r.avsc"}}  # fmt: skip


def test_unreadable_or_unknown_files(tmp_path: Path) -> None:
    (tmp_path / "x.schema.json").write_text("{not json")
    with pytest.raises(SchemaConversionError, match="x.schema.json: cannot read as JSON"):
        schema_payload(tmp_path / "x.schema.json")
    (tmp_path / "x.txt").write_text("{}")
    with pytest.raises(SchemaConversionError, match="expected a \\*.schema.json or \\*.avsc file"):
        schema_payload(tmp_path / "x.txt")
