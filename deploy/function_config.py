"""FunctionConfig files for ``pulsar-admin functions create --function-config-file``: fields and rules.

The field list and types are the Java ``FunctionConfig`` bean as the YAML is read
(docs/pulsar-functions.md §3), from the table in ``schemas/function_config.py`` that localrun reads too.
The rules here are what the admin server rejects for a Python function
(§3, §2.2, §2.3) plus the instance's own limits (§1.5, §2.1). Every
problem names the file and the dotted field path, so a bad config reads like a compiler error.
``localrun/config.py`` adds the rules our local runtime needs to the same table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from schemas.function_config import FIELDS, NOT_FOR_PYTHON, Finding
from schemas.function_config import type_name as _type_name

INPUT_FIELDS = ("inputs", "topicsPattern", "customSerdeInputs", "customSchemaInputs", "inputSpecs")
NAME_RE = re.compile(r"^[A-Za-z0-9_.=:-]+$")  # Pulsar's allowed characters in tenant/namespace/name
QUALIFIED_TOPIC_RE = re.compile(r"^(persistent|non-persistent)://[^/]+/[^/]+/[^/]+$")
CLASS_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
MIN_ACK_TIMEOUT_MS = 10_000  # docs/pulsar-functions.md §2.1: the C++ client rejects a smaller unacked-message timeout
# Where `make package` (deploy/packaging.py) writes each function's archive, relative to the repo root.
PACKAGE_DIR = "build/functions"


@dataclass(frozen=True)
class Problem:
    """One thing Pulsar (or the Python instance) would reject, located by file and field."""

    source: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.field}: {self.message}" if self.field else f"{self.source}: {self.message}"


class FunctionConfigError(ValueError):
    """A FunctionConfig file that a cluster would reject; ``problems`` lists every reason."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def _python_rules(config: Mapping[str, Any]) -> list[Finding]:
    """The admin server's checks for a Python function (docs/pulsar-functions.md §3, §2.2, §2.3) and the instance's limits."""
    found: list[Finding] = []
    for key in ("tenant", "namespace", "name"):
        # The CLI would default these (public/default, last part of className): a deploy must say.
        if key not in config:
            found.append((key, "missing: the deploy needs it to find the function (the CLI would guess)"))
        elif isinstance(config[key], str) and not NAME_RE.match(config[key]):
            found.append((key, f"{config[key]!r} has characters Pulsar does not allow in names"))
    if "className" not in config:
        found.append(("className", "missing: required for Python functions (module.Class)"))
    elif isinstance(config["className"], str) and not CLASS_NAME_RE.match(config["className"]):
        found.append(("className", f"{config['className']!r} should be module.Class or module (docs/pulsar-functions.md §1.1)"))
    if "py" not in config:
        found.append(("py", "missing: the code file or archive to upload"))

    inputs = _input_topics(config)
    if not any(key in config for key in INPUT_FIELDS) or not inputs:
        found.append(("inputs", "no input topic: set inputSpecs (or inputs/topicsPattern)"))
    output = config.get("output")
    if isinstance(output, str) and output in inputs:
        found.append(("output", f"{output} is also an input topic"))

    parallelism = config.get("parallelism")
    if isinstance(parallelism, int) and not isinstance(parallelism, bool) and parallelism <= 0:
        found.append(("parallelism", f"must be > 0, is {parallelism}"))

    guarantees = config.get("processingGuarantees", "ATLEAST_ONCE")
    if guarantees == "EFFECTIVELY_ONCE":
        found.append(("processingGuarantees", "EFFECTIVELY_ONCE is rejected for Python (docs/pulsar-functions.md §2.2)"))
    if guarantees == "ATMOST_ONCE" and config.get("autoAck") is False:
        found.append(("autoAck", "ATMOST_ONCE requires autoAck true (§2.2)"))
    if config.get("retainOrdering") is True and config.get("retainKeyOrdering") is True:
        found.append(("retainKeyOrdering", "retainOrdering and retainKeyOrdering are mutually exclusive"))
    if "windowConfig" in config:
        found.append(("windowConfig", "window functions are rejected for Python"))
    retries = config.get("maxMessageRetries")
    if isinstance(retries, int) and not isinstance(retries, bool) and retries >= 0:
        found.append(("maxMessageRetries", "message retries are rejected for Python (docs/pulsar-functions.md §2.3)"))
    if "deadLetterTopic" in config:
        found.append(("deadLetterTopic", "rejected for Python: it needs maxMessageRetries, which Python lacks "
                                         "(docs/pulsar-functions.md §2.3); publish dead letters from process() instead"))
    for key, runtime in NOT_FOR_PYTHON.items():
        if key in config:
            found.append((key, f"{runtime}-only field, not for a Python function"))
    timeout = config.get("timeoutMs")
    if isinstance(timeout, int) and not isinstance(timeout, bool):
        if guarantees != "ATLEAST_ONCE":
            found.append(("timeoutMs", f"accepted only with ATLEAST_ONCE, not {guarantees}"))
        if timeout < MIN_ACK_TIMEOUT_MS:
            found.append(("timeoutMs", f"{timeout} < {MIN_ACK_TIMEOUT_MS}: the Python client refuses it (docs/pulsar-functions.md §2.1)"))

    specs = config.get("inputSpecs")
    if isinstance(specs, dict):
        for topic, spec in specs.items():
            if not isinstance(spec, dict):
                continue
            path = f"inputSpecs.{topic}"
            if "schemaType" in spec and "serdeClassName" in spec:
                found.append((path, "only one of schemaType and serdeClassName may be set"))
            regex = spec.get("isRegexPattern") is True
            if isinstance(topic, str) and not regex and not QUALIFIED_TOPIC_RE.match(topic):
                # docs/pulsar-functions.md §1.5: context.ack looks the topic up by the configured string, and messages always
                # carry the fully qualified name.
                found.append((path, "input topic should be fully qualified (persistent://tenant/ns/name, §1.5)"))
            if regex and (guarantees == "MANUAL" or config.get("autoAck") is False):
                found.append((path, "a regex input cannot be acked from the context (docs/pulsar-functions.md §1.5)"))
    return found


def _input_topics(config: Mapping[str, Any]) -> list[str]:
    topics: list[str] = []
    if isinstance(config.get("inputs"), list):
        topics += [t for t in config["inputs"] if isinstance(t, str)]
    for key in ("customSerdeInputs", "customSchemaInputs", "inputSpecs"):
        if isinstance(config.get(key), dict):
            topics += [t for t in config[key] if isinstance(t, str)]
    if isinstance(config.get("topicsPattern"), str):
        topics.append(config["topicsPattern"])
    return topics


def validate_function_config(config: Any, source: str) -> list[Problem]:
    """Every field and rule problem of one parsed FunctionConfig; empty when a cluster would take it."""
    if not isinstance(config, dict):
        return [Problem(source, "", f"should be a YAML map of FunctionConfig fields, is {_type_name(config)}")]
    found: list[Finding] = []
    for key, value in config.items():
        if key not in FIELDS:
            found.append((str(key), "not a FunctionConfig field (docs/pulsar-functions.md §3)"))
        else:
            found.extend(FIELDS[key](value, str(key)))
    found.extend(_python_rules(config))
    return [Problem(source, path, message) for path, message in found]


def package_path(name: str) -> str:
    """The archive `make package` builds for function `name`: what a deployable config's `py` names."""
    return f"{PACKAGE_DIR}/{name}.zip"


def deployable_py_problems(config: Any, source: str) -> list[Problem]:
    """A config deployed from this repo must name its archive in `py`: `pulsar-admin functions create
    --function-config-file` uploads that file as it is, and a lone .py would arrive without its
    sibling modules and wheels (docs/pulsar-functions.md §4). Run from source locally with localrun's `--py` instead."""
    if not isinstance(config, dict) or not isinstance(config.get("py"), str) or not isinstance(config.get("name"), str):
        return []  # missing or mistyped: validate_function_config reports it
    want = package_path(config["name"])
    if config["py"] != want:
        hint = " (a .py runs locally with `functions localrun --py`, not on a cluster)" \
            if config["py"].endswith(".py") else ""
        return [Problem(source, "py", f"should be {want}, the archive `make package` builds, "
                                      f"is {config['py']}{hint}")]
    return []


def input_topics(config: Mapping[str, Any]) -> list[str]:
    """The input topic strings exactly as configured (the instance's consumer map keys, docs/pulsar-functions.md §1.5)."""
    return _input_topics(config)


def load_function_config(path: Path, source: str | None = None, *, deployable: bool = False) -> dict[str, Any]:
    """Parse and check one FunctionConfig file; raise FunctionConfigError naming every problem.

    `deployable`: also require `py` to be the function's archive (`deployable_py_problems`)."""
    label = source or str(path)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise FunctionConfigError([Problem(label, "", f"cannot read: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise FunctionConfigError([Problem(label, "", f"is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})")]) from exc
    except yaml.YAMLError as exc:
        raise FunctionConfigError([Problem(label, "", f"not valid YAML: {exc}")]) from exc
    problems = validate_function_config(config, label)
    if deployable:
        problems += deployable_py_problems(config, label)
    if problems:
        raise FunctionConfigError(problems)
    return config
