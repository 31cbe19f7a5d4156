"""A tiny project for the deploy tests: one function, three topics (one partitioned, one with a
schema), written into a tmp dir. Shared by tests/test_deploy_*.py."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

CHAT_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "Chat message",
    "type": "object",
    "required": ["room", "text"],
    "properties": {
        "room": {"type": "string", "pattern": "^[a-z]+$"},
        "text": {"type": "string"},
        "sent_at": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "reply_to": {"type": ["string", "null"]},
    },
}

ECHO_CONFIG: dict[str, Any] = {
    "tenant": "acme", "namespace": "media", "name": "echo", "className": "echo.Echo",
    "py": "build/functions/echo.zip",
    "inputSpecs": {"persistent://acme/media/in": {"serdeClassName": "bytes_serde.BytesSerDe"}},
    "processingGuarantees": "MANUAL", "retainKeyOrdering": True, "parallelism": 1,
}  # fmt: skip

PIPELINE: dict[str, Any] = {
    "tenant": "acme",
    "namespace": "media",
    "topics": [{"name": "in", "partitions": 0}, {"name": "out", "partitions": 3}, {"name": "chat-in", "partitions": 0}],
    "room_topics": {"template": "room-{room}-{kind}"},
    "functions": [{"name": "echo", "config": "deploy/functions/echo.yaml", "inputs": ["in"], "parallelism": 1}],
}

ECHO_PY = '''"""Sample function: echoes its input, after a third-party import."""
import tinydep


class Echo:
    def process(self, input, context):
        return tinydep.VALUE + input
'''

SERDE_PY = '''class BytesSerDe:
    def serialize(self, value):
        return value

    def deserialize(self, data):
        return data
'''


def write_project(root: Path, pipeline: dict[str, Any] | None = None, config: dict[str, Any] | None = None) -> Path:
    (root / "schemas").mkdir(parents=True)
    (root / "schemas" / "chat.schema.json").write_text(json.dumps(CHAT_SCHEMA))
    (root / "deploy" / "functions").mkdir(parents=True)
    (root / "deploy" / "functions" / "echo.yaml").write_text(yaml.safe_dump(config or ECHO_CONFIG))
    (root / "deploy" / "pipeline.yaml").write_text(yaml.safe_dump(pipeline or PIPELINE))
    (root / "functions").mkdir()
    (root / "functions" / "echo.py").write_text(ECHO_PY)
    (root / "functions" / "bytes_serde.py").write_text(SERDE_PY)
    return root
