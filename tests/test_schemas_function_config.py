"""schemas/function_config.py: the one FunctionConfig field table, as localrun and deploy both read it."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.function_config import validate_function_config
from localrun.config import ConfigError, load_function_config
from schemas.function_config import FIELDS, GUARANTEES, NOT_FOR_PYTHON, is_guarantee

BASE = {
    "tenant": "public", "namespace": "wtpulsar", "name": "exclaim", "className": "exclaim.Exclaim",
    "py": "functions/exclaim.py", "inputs": ["persistent://public/wtpulsar/in"],
    "output": "persistent://public/wtpulsar/out",
}  # fmt: skip


def localrun_load(tmp_path: Path, extra: str) -> object:
    code = tmp_path / "exclaim.py"
    code.write_text("class Exclaim:\n    def process(self, input, context):\n        return input\n")
    path = tmp_path / "fn.yaml"
    path.write_text(f"className: exclaim.Exclaim\npy: {code}\ninputs: [persistent://public/default/in]\n{extra}")
    return load_function_config(path)


def deploy_fields_named(extra: dict[str, object]) -> list[tuple[str, str]]:
    return [(p.field, p.message) for p in validate_function_config({**BASE, **extra}, "sample.yaml")]


def test_a_key_outside_the_table_is_refused_by_both_readers(tmp_path: Path) -> None:
    assert "maxRetries" not in FIELDS
    with pytest.raises(ConfigError) as caught:
        localrun_load(tmp_path, "maxRetries: 3\n")
    assert caught.value.field == "maxRetries"
    assert deploy_fields_named({"maxRetries": 3}) == [("maxRetries", "not a FunctionConfig field (docs/pulsar-functions.md §3)")]


@pytest.mark.parametrize("key", ["customSchemaOutputs", "skipToLatest", "cleanupSubscription"])
def test_bean_fields_localrun_knew_and_deploy_did_not_are_now_fields_for_both(tmp_path: Path, key: str) -> None:
    value = {"customSchemaOutputs": "{}", "skipToLatest": "false", "cleanupSubscription": "true"}[key]
    localrun_load(tmp_path, f"{key}: {value}\n")  # no ConfigError
    typed = {"customSchemaOutputs": {}, "skipToLatest": False, "cleanupSubscription": True}[key]
    assert deploy_fields_named({key: typed}) == []


def test_deploy_checks_the_table_types_and_names_other_runtimes_fields() -> None:
    assert deploy_fields_named({"customSchemaOutputs": ["x"]}) == [("customSchemaOutputs", "should be a map, is a list")]
    assert deploy_fields_named({"jar": "x.jar"}) == [("jar", "Java-only field, not for a Python function")]
    assert deploy_fields_named({"go": "x"}) == [("go", "Go-only field, not for a Python function")]
    assert set(NOT_FOR_PYTHON) <= set(FIELDS)


def test_guarantees_are_the_literal_values() -> None:
    assert GUARANTEES == ("ATLEAST_ONCE", "ATMOST_ONCE", "EFFECTIVELY_ONCE", "MANUAL")
    assert is_guarantee("MANUAL") and not is_guarantee("manual") and not is_guarantee(None)
