"""deploy/pipeline.yaml names only ENVELOPE.md topics and agrees with the FunctionConfigs; the
moderate/route FunctionConfigs use only FunctionConfig fields of the right types
(docs/pulsar-functions.md §3) and settings a cluster accepts for Python; their userConfig loads."""

from __future__ import annotations

import importlib
import re
from typing import Any

import pytest
import yaml

from schemas.function_config import CONSUMER_FIELDS, FIELDS
from schemas.names import rooms_namespace
from tests.test_functions_chat_support import ROOT, chat_config, routing_table

PIPELINE = yaml.safe_load((ROOT / "deploy" / "pipeline.yaml").read_text())
ENVELOPE = (ROOT / "schemas" / "ENVELOPE.md").read_text()
MY_CONFIGS = ["moderate.yaml", "route.yaml"]

REJECTED_FOR_PYTHON = ("maxMessageRetries", "deadLetterTopic", "windowConfig")  # docs/pulsar-functions.md §2.3, §3


def envelope_topics() -> set[str]:
    """Short names from the ENVELOPE.md topic table (first column, backticked)."""
    names: set[str] = set()
    topic_section = ENVELOPE.split("## Names", 1)[1].split("\n## ", 1)[0]
    for line in topic_section.splitlines():
        m = re.match(r"^\| (`[^|]+) \|", line)
        if m:
            names.update(re.findall(r"`([^`]+)`", m.group(1)))
    names.discard("topic")
    return names


def test_envelope_table_was_read() -> None:
    assert {"chat-in", "chat-approved", "moderation", "segments", "unroutable", "dead-letter"} <= envelope_topics()


def test_pipeline_defaults_and_topics_are_exactly_the_envelope_ones() -> None:
    assert (PIPELINE["tenant"], PIPELINE["namespace"]) == ("public", "wtpulsar")
    names = [t["name"] for t in PIPELINE["topics"]]
    assert len(names) == len(set(names))
    fixed = {n for n in envelope_topics() if not n.startswith("room-")}
    assert set(names) == fixed
    for t in PIPELINE["topics"]:
        assert isinstance(t["partitions"], int) and not isinstance(t["partitions"], bool) and t["partitions"] >= 0
    assert PIPELINE["room_topics"]["template"].startswith("room-{room}-")


def test_pipeline_functions_name_only_known_topics() -> None:
    known = {t["name"] for t in PIPELINE["topics"]} | {"room-topics"}
    assert [f["name"] for f in PIPELINE["functions"]] == ["transcode", "chunk", "moderate", "route"]
    for fn in PIPELINE["functions"]:
        assert set(fn["inputs"]) <= known, fn["name"]
        assert set(fn["outputs"]) <= known, fn["name"]
        assert isinstance(fn["parallelism"], int) and fn["parallelism"] >= 1


@pytest.mark.parametrize("fn", PIPELINE["functions"], ids=lambda f: f["name"])
def test_function_configs_agree_with_the_pipeline(fn: dict[str, Any]) -> None:
    path = ROOT / fn["config"]
    if not path.exists():
        pytest.fail(f"{fn['config']} named by pipeline.yaml does not exist")
    config = yaml.safe_load(path.read_text())
    assert config["name"] == fn["name"]
    assert (config["tenant"], config["namespace"]) == (PIPELINE["tenant"], PIPELINE["namespace"])
    prefix = f"persistent://{PIPELINE['tenant']}/{PIPELINE['namespace']}/"
    assert list(config["inputSpecs"]) == [prefix + name for name in fn["inputs"]]
    assert config.get("parallelism", 1) == fn["parallelism"]


@pytest.mark.parametrize("name", MY_CONFIGS)
def test_function_config_fields_and_types(name: str) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "functions" / name).read_text())
    for key, value in config.items():  # the one FunctionConfig field table (docs/pulsar-functions.md §3)
        assert key in FIELDS, f"{name}: {key} is not a FunctionConfig field"
        assert FIELDS[key](value, key) == [], f"{name}: {key}"
    for key in REJECTED_FOR_PYTHON:
        assert key not in config, f"{name}: Pulsar rejects {key} for Python functions"
    assert config["processingGuarantees"] == "MANUAL"
    assert config["retainKeyOrdering"] is True and not config.get("retainOrdering", False)
    assert config["subscriptionPosition"] in ("Latest", "Earliest")
    assert config["parallelism"] >= 1
    assert "timeoutMs" not in config or config["timeoutMs"] >= 10_000
    for topic, spec in config["inputSpecs"].items():
        assert re.fullmatch(r"persistent://[^/]+/[^/]+/[A-Za-z0-9_-]+", topic), topic  # docs/pulsar-functions.md §1.5: fully qualified
        assert set(spec) <= set(CONSUMER_FIELDS)
        assert spec["serdeClassName"] == "bytes_serde.BytesSerDe"
    assert set(config["resources"]) <= {"cpu", "ram", "disk"}


@pytest.mark.parametrize("name", MY_CONFIGS)
def test_class_name_resolves_like_the_python_instance(name: str) -> None:
    config = yaml.safe_load((ROOT / "deploy" / "functions" / name).read_text())
    # py is the archive `make package` builds: <name>/src holds functions/*.py, so className's module
    # is functions/<module>.py (what `functions localrun --py` runs from source)
    assert config["py"] == f"build/functions/{config['name']}.zip"
    module_name, class_name = config["className"].split(".")
    assert (ROOT / "functions" / f"{module_name}.py").is_file()
    cls = getattr(importlib.import_module(module_name), class_name)
    cls()  # docs/pulsar-functions.md §1.1: the instance calls it with no arguments


def test_moderate_user_config_loads_and_names_envelope_topics() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "functions" / "moderate.yaml").read_text())
    loaded = chat_config.load_config(config["userConfig"], config["tenant"], config["namespace"])
    prefix = f"persistent://{config['tenant']}/{config['namespace']}/"
    assert loaded.dead_letter_topic == prefix + "dead-letter"
    assert loaded.approved_topic == prefix + "chat-approved"
    assert loaded.verdict_topic == prefix + "moderation"
    assert len(loaded.blocklist) > 0 and loaded.links.policy == "allowlist"
    # the function's built-in defaults are the same names
    defaults = chat_config.load_config([], config["tenant"], config["namespace"])
    assert (defaults.dead_letter_topic, defaults.approved_topic, defaults.verdict_topic) == (
        loaded.dead_letter_topic, loaded.approved_topic, loaded.verdict_topic)  # fmt: skip


def test_route_user_config_is_the_default_table() -> None:
    config = yaml.safe_load((ROOT / "deploy" / "functions" / "route.yaml").read_text())
    cfg = config["userConfig"]
    assert cfg["routes"] == routing_table.DEFAULT_ROUTES
    table = routing_table.RoutingTable(cfg["routes"], cfg["tenant"], cfg["namespace"])
    # per-room topics go to the pipeline's rooms namespace (the one rule of schemas/names.py, the one
    # pipeline.yaml names), unroutable messages stay beside the inputs
    pipeline = yaml.safe_load((ROOT / "deploy" / "pipeline.yaml").read_text())
    assert cfg["namespace"] == rooms_namespace(config["namespace"]) == pipeline["room_topics"]["namespace"]
    assert table.prefix == f"persistent://{config['tenant']}/{rooms_namespace(config['namespace'])}/"
    assert cfg["unroutableTopic"] == f"persistent://{config['tenant']}/{config['namespace']}/unroutable"
    # every per-room kind of ENVELOPE.md is produced by the table
    produced = set()
    for kind, rendition in (("video", "720p"), ("video", "360p"), ("screen", "720p"), ("audio", None),
                            ("chat", None), ("file", None)):  # fmt: skip
        props = {"room": "r", "kind": kind, **({"rendition": rendition} if rendition else {})}
        (topic,) = table.route(props, table.prefix + "segments").topics
        produced.add(topic.removeprefix(table.prefix + "room-r-"))
    # verdicts (no kind) from the moderation input go to the room's private verdict topic
    (topic,) = table.route({"room": "r", "user": "u", "action": "drop"}, table.prefix + "moderation").topics
    produced.add(topic.removeprefix(table.prefix + "room-r-"))
    assert produced == set(PIPELINE["room_topics"]["kinds"])
    assert all(f"`{k}`" in ENVELOPE for k in produced - {"moderation"})
    assert "`room-<room>-moderation`" in ENVELOPE


@pytest.mark.parametrize("name", MY_CONFIGS)
def test_localrun_accepts_the_config(name: str) -> None:
    localrun_config = pytest.importorskip("localrun.config")  # cross-check with the local runtime's validator
    path = ROOT / "deploy" / "functions" / name
    # from source, as `wtpulsar up` runs it (the archive exists only after `make package`)
    spec = localrun_config.load_function_config(path, py=localrun_config.source_py(path, ROOT / "functions"))
    assert spec.fqfn == f"public/wtpulsar/{name.removesuffix('.yaml')}"
    assert spec.py == str(ROOT / "functions" / f"{name.removesuffix('.yaml')}.py")
