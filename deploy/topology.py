"""``deploy/pipeline.yaml``: where the topics live, how they are partitioned, which functions run.

Only what a deploy needs is read (tenant, namespace, topics with partitions, the functions' config
files, the per-room topic template); the rest of the file is documentation for people and for
``tests/test_deploy_pipeline_yaml.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schemas.names import rooms_namespace

# Payload schemas of the structured topics (schemas/ENVELOPE.md). The other topics carry media
# bytes; their schemas/*.schema.json describe message *properties*, which the schema registry does
# not hold. A topic entry in pipeline.yaml may override this with `schema: <file in schemas/>`
# (or `schema: null` for none).
DEFAULT_TOPIC_SCHEMAS = {
    "chat-in": "chat.schema.json",
    "chat-approved": "chat.schema.json",
    "moderation": "verdict.schema.json",
}


class PipelineError(ValueError):
    """pipeline.yaml is missing something a deploy needs; the message names the field."""


@dataclass(frozen=True)
class Topic:
    name: str
    partitions: int  # 0: a non-partitioned topic
    schema: str | None  # file name in schemas/, or None for raw bytes


@dataclass(frozen=True)
class FunctionEntry:
    name: str
    config: Path  # FunctionConfig file, relative to the project root


@dataclass(frozen=True)
class Pipeline:
    tenant: str
    namespace: str
    topics: tuple[Topic, ...]
    functions: tuple[FunctionEntry, ...]
    room_topic_prefix: str | None  # e.g. "room-": route creates these on first publish
    rooms_namespace: str = ""  # where they live (room_topics.namespace); "" = rooms_namespace(namespace)

    def qualified(self, short: str) -> str:
        return f"persistent://{self.tenant}/{self.namespace}/{short}"

    def qualified_room(self, short: str) -> str:
        return f"persistent://{self.rooms_namespace_path}/{short}"

    @property
    def rooms_namespace_path(self) -> str:
        return f"{self.tenant}/{self.rooms_namespace or rooms_namespace(self.namespace)}"

    @property
    def namespace_path(self) -> str:
        return f"{self.tenant}/{self.namespace}"


def _need(mapping: dict[str, Any], key: str, kind: type, where: str, source: str) -> Any:
    if key not in mapping:
        raise PipelineError(f"{source}: {where}{key}: missing")
    value = mapping[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise PipelineError(f"{source}: {where}{key}: should be {kind.__name__}, is {type(value).__name__}")
    return value


def parse_pipeline(data: Any, source: str) -> Pipeline:
    if not isinstance(data, dict):
        raise PipelineError(f"{source}: should be a YAML map")
    tenant = _need(data, "tenant", str, "", source)
    namespace = _need(data, "namespace", str, "", source)
    topics: list[Topic] = []
    for i, entry in enumerate(_need(data, "topics", list, "", source)):
        where = f"topics[{i}]."
        if not isinstance(entry, dict):
            raise PipelineError(f"{source}: topics[{i}]: should be a map")
        name = _need(entry, "name", str, where, source)
        partitions = entry.get("partitions", 0)
        if not isinstance(partitions, int) or isinstance(partitions, bool) or partitions < 0:
            raise PipelineError(f"{source}: {where}partitions: should be an integer >= 0, is {partitions!r}")
        schema = entry["schema"] if "schema" in entry else DEFAULT_TOPIC_SCHEMAS.get(name)
        if schema is not None and not isinstance(schema, str):
            raise PipelineError(f"{source}: {where}schema: should be a file name in schemas/")
        topics.append(Topic(name, partitions, schema or None))
    functions: list[FunctionEntry] = []
    for i, entry in enumerate(data.get("functions") or []):
        where = f"functions[{i}]."
        if not isinstance(entry, dict):
            raise PipelineError(f"{source}: functions[{i}]: should be a map")
        functions.append(FunctionEntry(_need(entry, "name", str, where, source),
                                       Path(_need(entry, "config", str, where, source))))
    room_topics = data.get("room_topics") or {}
    if not isinstance(room_topics, dict):
        raise PipelineError(f"{source}: room_topics: should be a map (e.g. {{template: 'room-{{room}}-{{kind}}'}})")
    template = room_topics.get("template")
    prefix = template.split("{", 1)[0] if isinstance(template, str) and "{" in template else None
    rooms = room_topics.get("namespace", rooms_namespace(namespace))
    if not isinstance(rooms, str) or rooms == namespace:
        raise PipelineError(f"{source}: room_topics.namespace: should be a namespace other than {namespace!r} "
                            f"(route may produce there, never on the input topics), is {rooms!r}")
    return Pipeline(tenant, namespace, tuple(topics), tuple(functions), prefix or None, rooms)


def load_pipeline(path: Path) -> Pipeline:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PipelineError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise PipelineError(f"{path}: is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from exc
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML: {exc}") from exc
    return parse_pipeline(data, str(path))
