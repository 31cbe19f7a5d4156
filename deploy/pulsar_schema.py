"""Topic schemas for Pulsar's schema registry, made from ``schemas/``.

Pulsar's JSON schema type carries an *Avro* record definition (that is what the clients'
``JsonSchema(Record)`` sends and what the broker checks compatibility with), not a JSON Schema
document. So ``*.schema.json`` files are translated into an Avro record: a property that is not
``required`` becomes a union with ``null`` and default ``null``; patterns, ranges and enums stay in
the JSON Schema file (the registry has no place for them). ``*.avsc`` files are Avro already and are
uploaded as type AVRO.

The result is the body of ``POST /admin/v2/schemas/{tenant}/{namespace}/{topic}/schema`` and the file
``pulsar-admin schemas upload --filename`` reads: ``{"type", "schema", "properties"}``.
Producers without a schema (the ingress, the functions' BytesSchema) can still write to such a
topic while the namespace keeps the default ``schemaValidationEnforced=false``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

AVRO_NAMESPACE = "wtpulsar"
SCALARS = {"string": "string", "integer": "long", "number": "double", "boolean": "boolean", "null": "null"}


class SchemaConversionError(ValueError):
    """A schema construct with no Avro equivalent; the message names the file and the property."""


def _record_name(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Record"
    return name if not name[0].isdigit() else "R" + name


def _convert(node: Any, path: str, source: str) -> Any:
    if not isinstance(node, dict):
        raise SchemaConversionError(f"{source}: {path}: schema should be an object")
    kind = node.get("type")
    if kind is None and "const" in node:
        kind = {str: "string", bool: "boolean", int: "integer", float: "number"}.get(type(node["const"]))
    if kind is None and "enum" in node and all(isinstance(v, str) for v in node["enum"]):
        kind = "string"
    if isinstance(kind, list):
        branches = [_convert({**node, "type": k}, path, source) for k in kind]
        # Avro unions: "null" first so that a null default is legal.
        return sorted(branches, key=lambda b: b != "null")
    if kind in SCALARS:
        return SCALARS[kind]
    if kind == "array":
        if "items" not in node:
            raise SchemaConversionError(f"{source}: {path}: an array needs `items` for Avro")
        return {"type": "array", "items": _convert(node["items"], f"{path}[]", source)}
    if kind == "object":
        if "properties" in node:
            return _record(node, _record_name(path.rsplit(".", 1)[-1]), path, source)
        values = node.get("additionalProperties")
        if isinstance(values, dict):
            return {"type": "map", "values": _convert(values, f"{path}{{}}", source)}
        raise SchemaConversionError(f"{source}: {path}: an object needs `properties` or an "
                                    f"`additionalProperties` schema for Avro")
    raise SchemaConversionError(f"{source}: {path}: type {kind!r} has no Avro equivalent")


def _record(node: dict[str, Any], name: str, path: str, source: str) -> dict[str, Any]:
    required = set(node.get("required") or [])
    fields = []
    for prop, sub in node["properties"].items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", prop):
            raise SchemaConversionError(f"{source}: {path}.{prop}: not a legal Avro field name")
        avro = _convert(sub, f"{path}.{prop}", source)
        field: dict[str, Any] = {"name": prop, "type": avro}
        if prop not in required:
            branches = avro if isinstance(avro, list) else [avro]
            field = {"name": prop, "type": ["null", *[b for b in branches if b != "null"]], "default": None}
        fields.append(field)
    missing = required - set(node["properties"])
    if missing:
        raise SchemaConversionError(f"{source}: {path}: required {', '.join(sorted(missing))} not in properties")
    return {"type": "record", "name": name, "namespace": AVRO_NAMESPACE, "fields": fields}


def avro_from_json_schema(document: Any, source: str) -> dict[str, Any]:
    """The Avro record for a JSON Schema document describing an object payload."""
    if not isinstance(document, dict) or document.get("type") != "object" or "properties" not in document:
        raise SchemaConversionError(f"{source}: the top level should be an object schema with properties")
    name = _record_name(str(document.get("title") or Path(source).name.split(".")[0]))
    return _record(document, name, "$", source)


def schema_payload(path: Path) -> dict[str, Any]:
    """The registry payload for one file in ``schemas/`` (``*.schema.json`` or ``*.avsc``)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SchemaConversionError(f"{path}: cannot read as JSON: {exc}") from exc
    if path.name.endswith(".avsc"):
        kind, definition = "AVRO", document
    elif path.name.endswith(".schema.json"):
        kind, definition = "JSON", avro_from_json_schema(document, str(path))
    else:
        raise SchemaConversionError(f"{path}: expected a *.schema.json or *.avsc file")
    return {"type": kind, "schema": json.dumps(definition, separators=(",", ":"), sort_keys=False),
            "properties": {"source": path.name}}
