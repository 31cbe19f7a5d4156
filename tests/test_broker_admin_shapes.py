"""Admin REST responses of our broker and of Apache Pulsar for the same state, field by field.

The same state is built on both (a topic with a producer, an Exclusive and a Shared subscription
with consumers, a partitioned topic, a non-persistent topic, a schema, namespace policies); each
response the deploy and audit tools read (or a user of them would) is flattened to its field paths
and JSON types. Every field that differs, in presence or type, must be listed in broker/README.md
under "Admin REST shapes against Apache Pulsar", and every field listed there must still differ:
the test reads that table. Values are compared where the state fixes them (counters, types,
backlogs, schema body, policies).
"""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

import pulsar
import pytest

from tests.broker_helpers import admin, client, receive_all

README = Path(__file__).resolve().parents[1] / "broker" / "README.md"
SECTION = "## Admin REST shapes against Apache Pulsar"
NAMED = {"subscriptions", "partitions"}  # objects keyed by a subscription or partition name
SCHEMA = '{"type":"record","name":"Reading","fields":[{"name":"value","type":"int"}]}'


def kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if value is None:
        return "null"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names[type(value)]


def flatten(value: Any, path: str = "") -> dict[str, str]:
    """Field path -> JSON type; `*` for a name-keyed object's entries, `[]` for list items."""
    fields: dict[str, str] = {path: kind(value)} if path else {}
    if isinstance(value, dict):
        named = path.rsplit(".", 1)[-1] in NAMED
        for key, item in value.items():
            fields.update(flatten(item, f"{path}.{'*' if named else key}" if path else ("*" if named else key)))
    elif isinstance(value, list):
        for item in value:
            fields.update(flatten(item, f"{path}[]"))
    return fields


def build_and_read(backend: Any, tag: str) -> dict[str, Any]:
    """Create the state on `backend`; the responses read while producers and consumers are connected."""
    url = backend.admin_url
    ns = f"public/shapes-{tag}"
    status, body = admin(url, "PUT", f"/admin/v2/namespaces/{ns}")
    assert status == 204, body
    assert admin(url, "POST", f"/admin/v2/namespaces/{ns}/deduplication", True)[0] == 204
    assert admin(url, "POST", f"/admin/v2/namespaces/{ns}/permissions/reader-role", ["consume"])[0] == 204
    topic, parts, np_topic = f"persistent://{ns}/t", f"persistent://{ns}/p", f"non-persistent://{ns}/n"
    assert admin(url, "PUT", f"/admin/v2/persistent/{ns}/p/partitions", 2)[0] == 204
    responses: dict[str, Any] = {}
    with client(backend.service_url) as c:
        exclusive = c.subscribe(topic, "ex", consumer_name="ex-consumer")
        shared = c.subscribe(topic, "sh", consumer_type=pulsar.ConsumerType.Shared, consumer_name="sh-consumer")
        producer = c.create_producer(topic, producer_name=f"shapes-{tag}", batching_enabled=False)
        for i in range(3):
            producer.send(f"m{i}".encode())
        assert len(receive_all(exclusive, 3, 5000, ack=True)) == 3
        assert len(receive_all(shared, 2, 5000, ack=False)) == 2  # none acknowledged; all 3 dispatched to its queue
        parts_consumer = c.subscribe(parts, "ps")
        parts_producer = c.create_producer(parts, batching_enabled=False)
        for i in range(4):
            parts_producer.send(f"p{i}".encode(), partition_key=str(i))
        assert len(receive_all(parts_consumer, 4, 5000)) == 4
        np_consumer = c.subscribe(np_topic, "ns")
        np_producer = c.create_producer(np_topic, batching_enabled=False)
        np_producer.send(b"x")
        assert len(receive_all(np_consumer, 1, 5000)) == 1
        status, schema_post = admin(url, "POST", f"/admin/v2/schemas/{ns}/s/schema",
                                    {"type": "AVRO", "schema": SCHEMA, "properties": {"k": "v"}})
        assert status == 200, schema_post
        time.sleep(1.5)  # grouped acknowledgements reach the broker
        for name, path in {
            "topic stats": f"/admin/v2/persistent/{ns}/t/stats",
            "partitioned stats": f"/admin/v2/persistent/{ns}/p/partitioned-stats",
            "non-persistent stats": f"/admin/v2/non-persistent/{ns}/n/stats",
            "partitions": f"/admin/v2/persistent/{ns}/p/partitions",
            "schema": f"/admin/v2/schemas/{ns}/s/schema",
            "deduplication": f"/admin/v2/namespaces/{ns}/deduplication",
            "permissions": f"/admin/v2/namespaces/{ns}/permissions",
            "topics": f"/admin/v2/persistent/{ns}",
            "partitioned topics": f"/admin/v2/persistent/{ns}/partitioned",
        }.items():
            status, body = admin(url, "GET", path)
            assert status == 200, (name, status, body)
            responses[name] = body
        responses["schema post"] = schema_post
    return responses


def differences(ours: dict[str, Any], theirs: dict[str, Any]) -> set[tuple[str, str, str]]:
    """(response, field, what): "missing here" (Pulsar only), "extra here" (ours only), or
    "type: ours X, Pulsar Y"."""
    found: set[tuple[str, str, str]] = set()
    for name in theirs:
        mine, real = flatten(ours[name]), flatten(theirs[name])
        for field in real.keys() - mine.keys():
            found.add((name, field, "missing here"))
        for field in mine.keys() - real.keys():
            found.add((name, field, "extra here"))
        for field in mine.keys() & real.keys():
            if mine[field] != real[field]:
                found.add((name, field, f"type: ours {mine[field]}, Pulsar {real[field]}"))
    return found


def documented() -> set[tuple[str, str, str]]:
    """The table in broker/README.md: | response | what | fields (comma-separated) |."""
    text = README.read_text()
    assert SECTION in text, f"broker/README.md has no section {SECTION!r}"
    listed: set[tuple[str, str, str]] = set()
    for line in text.split(SECTION, 1)[1].split("\n## ", 1)[0].splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) != 3 or cells[0] in ("response", "") or set(cells[0]) <= {"-"}:
            continue
        for field in re.split(r",\s*", cells[2]):
            listed.add((cells[0], field.strip("` "), cells[1]))
    return listed


def test_flatten_names_paths_and_types() -> None:
    body = {"a": 1, "r": 0.5, "subscriptions": {"s1": {"consumers": [{"n": "x", "ok": True}]}}, "z": None}
    assert flatten(body) == {"a": "integer", "r": "number", "subscriptions": "object", "subscriptions.*": "object",
                             "subscriptions.*.consumers": "array", "subscriptions.*.consumers[]": "object",
                             "subscriptions.*.consumers[].n": "string", "subscriptions.*.consumers[].ok": "boolean",
                             "z": "null"}


def test_documented_table_is_read(tmp_path: Path) -> None:
    assert documented(), "the README table lists no difference at all: is it still there?"


@pytest.mark.pulsar
def test_admin_shapes_against_pulsar(broker, real_pulsar) -> None:
    tag = uuid.uuid4().hex[:6]
    ours, theirs = build_and_read(broker, tag), build_and_read(real_pulsar, tag)
    found = differences(ours, theirs)
    listed = documented()
    assert sorted(found - listed) == [], "differences not listed in broker/README.md"
    assert sorted(listed - found) == [], "listed in broker/README.md but no longer different"
    # Values the state fixes, on both.
    for responses in (ours, theirs):
        stats = responses["topic stats"]
        assert (stats["msgInCounter"], stats["msgOutCounter"], stats["storageSize"] > 0) == (3, 6, True)
        subs = stats["subscriptions"]
        assert (subs["ex"]["type"], subs["ex"]["msgBacklog"], subs["ex"]["isDurable"]) == ("Exclusive", 0, True)
        assert (subs["sh"]["type"], subs["sh"]["msgBacklog"], subs["sh"]["unackedMessages"]) == ("Shared", 3, 3)
        assert [c["consumerName"] for c in subs["sh"]["consumers"]] == ["sh-consumer"]
        assert [p["producerName"] for p in stats["publishers"]] == [f"shapes-{tag}"]
        assert stats["deduplicationStatus"] == "Enabled"
        pstats = responses["partitioned stats"]
        assert (pstats["msgInCounter"], pstats["metadata"], len(pstats["partitions"])) == (4, {"partitions": 2, "deleted": False}, 2)
        assert responses["partitions"] == {"partitions": 2, "deleted": False}
        assert responses["non-persistent stats"]["msgInCounter"] == 1
        schema = responses["schema"]
        assert (schema["type"], schema["data"], schema["properties"], schema["version"]) == ("AVRO", SCHEMA, {"k": "v"}, 0)
        assert responses["schema post"] == {"version": {"version": 0}}  # Pulsar's PostSchemaResponse
        assert responses["deduplication"] is True
        assert responses["permissions"] == {"reader-role": ["consume"]}
        ns = f"public/shapes-{tag}"
        assert sorted(responses["topics"]) == sorted([f"persistent://{ns}/t", f"persistent://{ns}/p-partition-0",
                                                      f"persistent://{ns}/p-partition-1"])
        assert responses["partitioned topics"] == [f"persistent://{ns}/p"]
