"""deploy/function_config.py: the FunctionConfig field list and the admin server's Python rules
(docs/pulsar-functions.md §3), on the repo's FunctionConfigs and on good and bad samples."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.function_config import (
    FunctionConfigError,
    Problem,
    deployable_py_problems,
    load_function_config,
    validate_function_config,
)
from schemas.function_config import FIELDS

ROOT = Path(__file__).resolve().parent.parent
REPO_CONFIGS = sorted((ROOT / "deploy" / "functions").glob("*.yaml"))

GOOD: dict[str, Any] = {
    "tenant": "public", "namespace": "wtpulsar", "name": "exclaim", "className": "exclaim.Exclaim",
    "py": "functions/exclaim.py",
    "inputSpecs": {"persistent://public/wtpulsar/in": {"serdeClassName": "bytes_serde.BytesSerDe",
                                                       "receiverQueueSize": 100}},
    "output": "persistent://public/wtpulsar/out", "processingGuarantees": "MANUAL", "retainKeyOrdering": True,
    "subscriptionPosition": "Earliest", "parallelism": 2, "resources": {"cpu": 0.5, "ram": 536870912},
    "producerConfig": {"compressionType": "ZSTD", "batchBuilder": "KEY_BASED"},
    "userConfig": {"n": 3, "nested": {"a": [1, 2]}}, "logTopic": "persistent://public/wtpulsar/log",
}  # fmt: skip


def problems_of(config: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p.field, p.message) for p in validate_function_config(config, "sample.yaml")]


@pytest.mark.skipif(not REPO_CONFIGS, reason="deploy/functions/ has no FunctionConfig yet")
@pytest.mark.parametrize("path", REPO_CONFIGS, ids=lambda p: p.name)
def test_repo_function_configs_are_accepted(path: Path) -> None:
    config = yaml.safe_load(path.read_text())
    assert validate_function_config(config, path.name) == []
    assert set(config) <= set(FIELDS)


@pytest.mark.skipif(not REPO_CONFIGS, reason="deploy/functions/ has no FunctionConfig yet")
@pytest.mark.parametrize("path", REPO_CONFIGS, ids=lambda p: p.name)
def test_repo_function_configs_name_the_archive_make_package_builds(path: Path) -> None:
    """`pulsar-admin functions create --function-config-file` uploads `py` as it is: a .py would go
    without its sibling modules and PyAV; the archive is build/functions/<name>.zip (deploy/packaging.py)."""
    config = yaml.safe_load(path.read_text())
    assert deployable_py_problems(config, path.name) == []
    assert config["py"] == f"build/functions/{config['name']}.zip"
    assert load_function_config(path, deployable=True) == config


@pytest.mark.parametrize(("py", "message"), [
    ("functions/exclaim.py", "should be build/functions/exclaim.zip, the archive `make package` builds, is "
                             "functions/exclaim.py (a .py runs locally with `functions localrun --py`, not on a cluster)"),
    ("build/functions/other.zip", "should be build/functions/exclaim.zip, the archive `make package` builds, is "
                                  "build/functions/other.zip"),
    ("exclaim.zip", "should be build/functions/exclaim.zip, the archive `make package` builds, is exclaim.zip"),
])  # fmt: skip
def test_py_other_than_the_archive_is_not_deployable(tmp_path: Path, py: str, message: str) -> None:
    assert [(p.field, p.message) for p in deployable_py_problems({**GOOD, "py": py}, "x.yaml")] == [("py", message)]
    path = tmp_path / "exclaim.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "py": py}))
    assert load_function_config(path) == {**GOOD, "py": py}  # a valid FunctionConfig all the same
    with pytest.raises(FunctionConfigError) as caught:
        load_function_config(path, "deploy/functions/exclaim.yaml", deployable=True)
    assert str(caught.value) == f"deploy/functions/exclaim.yaml: py: {message}"


def test_good_sample_has_no_problem() -> None:
    assert problems_of(GOOD) == []


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"parallelism": "2"}, "parallelism", "should be an integer, is a string"),
    ({"parallelism": True}, "parallelism", "should be an integer, is a boolean"),
    ({"retainKeyOrdering": "yes"}, "retainKeyOrdering", "should be a boolean, is a string"),
    ({"inputs": "persistent://public/wtpulsar/in"}, "inputs", "should be a list, is a string"),
    ({"userConfig": ["a"]}, "userConfig", "should be a map, is a list"),
    ({"subscriptionPosition": "latest"}, "subscriptionPosition", "'latest' is not one of Latest, Earliest"),
    ({"processingGuarantees": "AT_LEAST_ONCE"}, "processingGuarantees", "'AT_LEAST_ONCE' is not one of"),
    ({"resources": {"cpu": "1"}}, "resources.cpu", "should be a number, is a string"),
    ({"resources": {"gpu": 1}}, "resources.gpu", "unknown resources field"),
    ({"producerConfig": {"compressionType": "GZIP"}}, "producerConfig.compressionType", "'GZIP' is not one of"),
    ({"inputSpecs": {"persistent://public/wtpulsar/in": {"receiverQueueSize": "100"}}},
     "inputSpecs.persistent://public/wtpulsar/in.receiverQueueSize", "should be an integer, is a string"),
    ({"inputSpecs": {"persistent://public/wtpulsar/in": {"serde": "x.Y"}}},
     "inputSpecs.persistent://public/wtpulsar/in.serde", "unknown input spec field"),
])  # fmt: skip
def test_mistyped_fields_are_named(change: dict[str, Any], field: str, message: str) -> None:
    found = problems_of({**GOOD, **change})
    assert any(f == field and message in m for f, m in found), found


def test_unknown_field_is_named_with_the_file() -> None:
    problems = validate_function_config({**GOOD, "maxRetries": 3, "deadLetterPolicy": {}}, "deploy/functions/x.yaml")
    assert [p.field for p in problems] == ["maxRetries", "deadLetterPolicy"]
    assert str(problems[0]) == ("deploy/functions/x.yaml: maxRetries: not a FunctionConfig field "
                                "(docs/pulsar-functions.md §3)")


@pytest.mark.parametrize(("change", "field", "message"), [
    ({"processingGuarantees": "EFFECTIVELY_ONCE"}, "processingGuarantees", "rejected for Python"),
    ({"maxMessageRetries": 3}, "maxMessageRetries", "rejected for Python"),
    ({"deadLetterTopic": "persistent://public/wtpulsar/dlq"}, "deadLetterTopic", "rejected for Python"),
    ({"windowConfig": {"windowLengthCount": 10}}, "windowConfig", "rejected for Python"),
    ({"processingGuarantees": "ATMOST_ONCE", "autoAck": False}, "autoAck", "requires autoAck true"),
    ({"processingGuarantees": "ATLEAST_ONCE", "timeoutMs": 5000}, "timeoutMs", "5000 < 10000"),
    ({"timeoutMs": 30000}, "timeoutMs", "only with ATLEAST_ONCE, not MANUAL"),
    ({"retainOrdering": True}, "retainKeyOrdering", "mutually exclusive"),
    ({"output": "persistent://public/wtpulsar/in"}, "output", "is also an input topic"),
    ({"parallelism": 0}, "parallelism", "must be > 0"),
    ({"maxPendingAsyncRequests": 10}, "maxPendingAsyncRequests", "Java-only"),
    ({"className": "exclaim.Exclaim.process"}, "className", "should be module.Class or module"),
    ({"name": "ex claim"}, "name", "characters Pulsar does not allow"),
    ({"inputSpecs": {"in": {}}}, "inputSpecs.in", "should be fully qualified"),
    ({"inputSpecs": {"persistent://public/wtpulsar/in": {"schemaType": "json", "serdeClassName": "a.B"}}},
     "inputSpecs.persistent://public/wtpulsar/in", "only one of schemaType and serdeClassName"),
    ({"inputSpecs": {"persistent://public/wtpulsar/.*": {"isRegexPattern": True}}},
     "inputSpecs.persistent://public/wtpulsar/.*", "regex input cannot be acked"),
    ({"inputSpecs": {}}, "inputs", "no input topic"),
])  # fmt: skip
def test_python_rules_of_the_admin_server(change: dict[str, Any], field: str, message: str) -> None:
    found = problems_of({**GOOD, **change})
    assert any(f == field and message in m for f, m in found), found


@pytest.mark.parametrize("key", ["tenant", "namespace", "name", "className", "py"])
def test_required_fields(key: str) -> None:
    config = {k: v for k, v in GOOD.items() if k != key}
    assert [f for f, _ in problems_of(config)] == [key]


def test_not_a_map() -> None:
    assert validate_function_config(["a"], "f.yaml") == [
        Problem("f.yaml", "", "should be a YAML map of FunctionConfig fields, is a list")]


def test_load_reports_every_problem_of_a_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**GOOD, "parallelism": "two", "bogus": 1}))
    with pytest.raises(FunctionConfigError) as caught:
        load_function_config(path)
    assert sorted((p.source, p.field) for p in caught.value.problems) == [(str(path), "bogus"), (str(path), "parallelism")]
    assert f"{path}: parallelism: should be an integer, is a string" in str(caught.value)


def test_load_bad_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("tenant: [unclosed\n")
    with pytest.raises(FunctionConfigError, match="broken.yaml: not valid YAML"):
        load_function_config(path)
    with pytest.raises(FunctionConfigError, match="missing.yaml: cannot read"):
        load_function_config(tmp_path / "missing.yaml")


def test_load_returns_the_config(tmp_path: Path) -> None:
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert load_function_config(path) == GOOD
