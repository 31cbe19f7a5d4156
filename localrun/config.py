"""FunctionConfig YAML → a validated, normalised `FunctionSpec`.

Field names are the Java `FunctionConfig` bean names that `pulsar-admin functions create
--function-config-file` reads (docs/pulsar-functions.md §3). Validation reproduces what Pulsar's
admin server does for a Python function (`FunctionConfigUtils.doCommonChecks` followed by
`doPythonChecks`), with the same reasons, so a file rejected here is rejected by a cluster and
the other way round. Every error names the file and the offending field.

`py` may be replaced, as `pulsar-admin functions localrun --py FILE` replaces it (CLI flags apply on
top of the file, docs/pulsar-functions.md §3): `deploy/functions/*.yaml` name the deployable archive
`build/functions/X.zip`, and `--py functions/X.py` runs the same function from source.

Pure: no I/O besides reading the YAML file and checking that `py` exists.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from schemas.function_config import (
    COMPRESSION_TYPES,
    CONSUMER_FIELDS,
    FIELDS,
    GUARANTEES,
    LOG_LEVELS,
    PRODUCER_FIELDS,
    RESOURCES_FIELDS,
    Guarantee,
    SubscriptionType,
    is_guarantee,
)

COMPRESSIONS = COMPRESSION_TYPES

# Keys of the Java FunctionConfig bean (schemas/function_config.py). Jackson fails on anything else
# (CmdUtils.loadConfig), so a typo such as `autoack` is an error rather than a silently ignored setting.
FUNCTION_CONFIG_KEYS = frozenset(FIELDS)
CONSUMER_CONFIG_KEYS = frozenset(CONSUMER_FIELDS)
PRODUCER_CONFIG_KEYS = frozenset(PRODUCER_FIELDS)
RESOURCES_KEYS = frozenset(RESOURCES_FIELDS)

# TopicName.isValid: optional domain, then `topic`, `tenant/ns/topic` or legacy
# `tenant/cluster/ns/topic`; tenant/namespace parts follow NamespaceName's character set.
_NAME_PART = re.compile(r"^[-=:.\w]+$")


class ConfigError(ValueError):
    """A FunctionConfig that Pulsar would reject. `str()` names the file and the field."""

    def __init__(self, path: str | os.PathLike[str], field_name: str, reason: str) -> None:
        self.path = str(path)
        self.field = field_name
        self.reason = reason
        super().__init__(f"{self.path}: {field_name}: {reason}")


@dataclass(frozen=True)
class InputSpec:
    """One consumer (`source.inputSpecs[topic]` of FunctionDetails)."""

    serde_class_name: str = ""
    schema_type: str = ""
    is_regex: bool = False
    receiver_queue_size: int | None = None
    schema_properties: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FunctionSpec:
    """Everything an instance needs, already defaulted the way the worker defaults it."""

    tenant: str
    namespace: str
    name: str
    class_name: str
    py: str  # absolute path of the .py or .zip
    inputs: dict[str, InputSpec]
    output: str = ""
    output_serde_class_name: str = ""
    output_schema_type: str = ""
    input_type_class_name: str = ""
    output_type_class_name: str = ""
    log_topic: str = ""
    processing_guarantees: Guarantee = "ATLEAST_ONCE"
    auto_ack: bool = True
    retain_ordering: bool = False
    retain_key_ordering: bool = False
    subscription_name: str = ""
    subscription_position: str = "LATEST"
    timeout_ms: int | None = None
    user_config: dict[str, Any] | None = None
    secrets: dict[str, Any] | None = None
    parallelism: int = 1
    compression_type: str = "LZ4"
    batch_builder: str = "DEFAULT"
    source_file: str = ""

    @property
    def fqfn(self) -> str:
        return f"{self.tenant}/{self.namespace}/{self.name}"

    @property
    def effective_subscription_name(self) -> str:
        """docs/pulsar-functions.md §2.1: `subName` when non-blank, else `tenant/namespace/name`."""
        return self.subscription_name.strip() and self.subscription_name or self.fqfn

    @property
    def subscription_type(self) -> SubscriptionType:
        """docs/pulsar-functions.md §2.1: retainOrdering (or EO) → Failover, then retainKeyOrdering → KeyShared, else Shared."""
        if self.retain_ordering or self.processing_guarantees == "EFFECTIVELY_ONCE":
            return "Failover"
        if self.retain_key_ordering:
            return "KeyShared"
        return "Shared"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> FunctionSpec:
        raw = json.loads(text)
        raw["inputs"] = {topic: InputSpec(**spec) for topic, spec in raw["inputs"].items()}
        return cls(**raw)


def is_valid_topic(topic: str) -> bool:
    """Like Pulsar's `TopicName.isValid`."""
    if not isinstance(topic, str) or not topic:
        return False
    rest = topic
    if "://" in topic:
        domain, rest = topic.split("://", 1)
        if domain not in ("persistent", "non-persistent"):
            return False
    parts = rest.split("/")
    if len(parts) == 1:
        return bool(parts[0])
    if len(parts) not in (3, 4):
        return False
    if not all(parts):
        return False
    return all(_NAME_PART.match(p) for p in parts[:-1])


def load_function_config(path: str | os.PathLike[str], py: str | os.PathLike[str] | None = None) -> FunctionSpec:
    """Read and validate one `--function-config-file`. Raises `ConfigError`.

    `py`, when given, replaces the file's `py` (what `--py` does, docs/pulsar-functions.md §3); it is checked the same way but
    resolved against the working directory only, and errors name it `--py`.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(path, "(file)", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "(file)", f"is not UTF-8 text (byte {exc.start} is {exc.object[exc.start]:#04x})") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(path, "(yaml)", f"invalid YAML at {where}: {problem}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(path, "(yaml)", f"expected a mapping of FunctionConfig fields, got {type(raw).__name__}")
    return build_spec(raw, path, py=py)


def build_spec(raw: dict[str, Any], path: str | os.PathLike[str] = "<config>", *,
               py: str | os.PathLike[str] | None = None) -> FunctionSpec:
    """Apply the CLI's defaults, then the admin server's checks, to a parsed FunctionConfig.

    `py` replaces `raw["py"]` like `--py` does (see `load_function_config`)."""
    path = Path(path)

    def fail(field_name: str, reason: str) -> ConfigError:
        return ConfigError(path, field_name, reason)

    for key in raw:
        if key not in FUNCTION_CONFIG_KEYS:
            raise fail(str(key), f'Unrecognized field "{key}" (not a FunctionConfig field)')

    def typed(key: str, types: type | tuple[type, ...], what: str) -> Any:
        value = raw.get(key)
        if value is None:
            return None
        if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
            raise fail(key, f"expected {what}, got {value!r}")
        if not isinstance(value, types):
            raise fail(key, f"expected {what}, got {type(value).__name__} {value!r}")
        return value

    str_keys = (
        "tenant", "namespace", "name", "className", "topicsPattern", "output", "outputSchemaType",
        "outputSerdeClassName", "inputTypeClassName", "outputTypeClassName", "logTopic",
        "processingGuarantees", "deadLetterTopic", "subName", "py", "runtime", "subscriptionPosition",
        "logLevel", "batchBuilder", "fqfn", "jar", "go",
    )
    for key in str_keys:
        typed(key, str, "a string")
    for key in ("retainOrdering", "retainKeyOrdering", "autoAck", "skipToLatest", "cleanupSubscription",
                "forwardSourceMessageProperty", "exposePulsarAdminClientEnabled"):
        typed(key, bool, "true or false")
    for key in ("parallelism", "maxMessageRetries", "timeoutMs", "maxPendingAsyncRequests"):
        typed(key, int, "an integer")
    for key in ("customSerdeInputs", "customSchemaInputs", "inputSpecs", "producerConfig", "userConfig",
                "secrets", "resources", "windowConfig"):
        typed(key, dict, "a mapping")
    inputs_list = typed("inputs", list, "a list of topics")

    class_name = raw.get("className") or ""
    tenant, namespace, name = raw.get("tenant"), raw.get("namespace"), raw.get("name")
    if raw.get("fqfn"):
        parts = raw["fqfn"].split("/")
        if len(parts) != 3:
            raise fail("fqfn", "must be tenant/namespace/name")
        tenant, namespace, name = tenant or parts[0], namespace or parts[1], name or parts[2]
    # CmdFunctions.inferMissingArguments: public/default, name = last dot-part of className.
    tenant = "public" if tenant is None else tenant
    namespace = "default" if namespace is None else namespace
    if name is None and class_name:
        name = class_name.rsplit(".", 1)[-1]

    runtime = (raw.get("runtime") or "PYTHON").upper()
    if raw.get("jar") or raw.get("go") or runtime != "PYTHON":
        raise fail("runtime", "localrun runs Python functions only (set `py`, not `jar`/`go`)")
    if py is not None:
        py = os.fspath(py)
        if not py:
            raise fail("--py", "is empty: give the function's .py file or .zip package")
    elif not raw.get("py"):
        raise fail("py", "required: the function's .py file or .zip package")

    guarantees = (raw.get("processingGuarantees") or "ATLEAST_ONCE").upper()
    if not is_guarantee(guarantees):
        raise fail("processingGuarantees", f"{raw['processingGuarantees']!r} is not one of {', '.join(GUARANTEES)}")

    # Input topics, in the order FunctionConfigUtils.convert fills source.inputSpecs.
    specs: dict[str, InputSpec] = {}
    for topic in inputs_list or []:
        if not isinstance(topic, str):
            raise fail("inputs", f"topic {topic!r} is not a string")
        specs[topic] = InputSpec()
    if raw.get("topicsPattern"):
        specs[raw["topicsPattern"]] = InputSpec(is_regex=True)
    for topic, serde in (raw.get("customSerdeInputs") or {}).items():
        specs[topic] = InputSpec(serde_class_name=str(serde))
    for topic, schema in (raw.get("customSchemaInputs") or {}).items():
        specs[topic] = _custom_schema_input(schema, path, topic)
    for topic, conf in (raw.get("inputSpecs") or {}).items():
        specs[topic] = _input_spec(conf, path, topic)

    # --- FunctionConfigUtils.doCommonChecks, same order and reasons ---
    if not tenant:
        raise fail("tenant", "Function tenant cannot be null")
    if not namespace:
        raise fail("namespace", "Function namespace cannot be null")
    if not name:
        raise fail("name", "Function name cannot be null")
    if not class_name:
        raise fail("className", "Function classname cannot be null")
    if not specs:
        raise fail("inputs", "No input topic(s) specified for the function")
    for topic in specs:
        if not is_valid_topic(topic):
            raise fail("inputs", f"Input topic {topic} is invalid")
    output = raw.get("output") or ""
    if output and not is_valid_topic(output):
        raise fail("output", f"Output topic {output} is invalid")
    log_topic = raw.get("logTopic") or ""
    if log_topic and not is_valid_topic(log_topic):
        raise fail("logTopic", f"LogTopic topic {log_topic} is invalid")
    dlq = raw.get("deadLetterTopic") or ""
    if dlq and not is_valid_topic(dlq):
        raise fail("deadLetterTopic", f"DeadLetter topic {dlq} is invalid")
    if raw.get("logLevel") and raw["logLevel"].upper() not in LOG_LEVELS:
        raise fail("logLevel", f"LogLevel {raw['logLevel']} is invalid")
    parallelism = raw.get("parallelism")
    if parallelism is not None and parallelism <= 0:
        raise fail("parallelism", "Function parallelism must be a positive number")
    if output and output in specs:
        raise fail("output", f"Output topic {output} is also being used as an input topic "
                             "(topics must be one or the other)")
    if raw.get("windowConfig") is not None:
        if raw.get("autoAck") is True:
            raise fail("autoAck", "Cannot enable auto ack when using windowing functionality")
        # doPythonChecks rejects any other window config for Python.
        raise fail("windowConfig", "There is currently no support windowing in python")
    _check_resources(raw.get("resources"), fail)
    timeout_ms = raw.get("timeoutMs")
    if timeout_ms is not None and timeout_ms <= 0:
        raise fail("timeoutMs", "Function timeout must be a positive number")
    if timeout_ms is not None and raw.get("processingGuarantees") is not None and guarantees != "ATLEAST_ONCE":
        raise fail("timeoutMs", "Message timeout can only be specified with processing guarantee is ATLEAST_ONCE")
    retries = raw.get("maxMessageRetries")
    if retries is not None and retries >= 0 and guarantees == "EFFECTIVELY_ONCE":
        raise fail("maxMessageRetries", "MaxMessageRetries and Effectively once don't gel well")
    if (retries is None or retries < 0) and dlq:
        raise fail("deadLetterTopic", "Dead Letter Topic specified, however max retries is set to infinity")
    if raw.get("retainKeyOrdering") and guarantees == "EFFECTIVELY_ONCE":
        raise fail("retainKeyOrdering",
                   "When effectively once processing guarantee is specified, retain Key ordering cannot be set")
    if raw.get("retainKeyOrdering") and raw.get("retainOrdering"):
        raise fail("retainKeyOrdering", "Only one of retain ordering or retain key ordering can be set")
    if py is not None:
        py = _resolve_py(py, path, fail, "--py", class_name, near_config=False)
    else:
        py = _resolve_py(raw["py"], path, fail, "py", class_name, near_config=True)
    for topic, spec in specs.items():
        if spec.receiver_queue_size is not None and spec.receiver_queue_size < 0:
            raise fail(f"inputSpecs.{topic}.receiverQueueSize", "Receiver queue size should be >= zero")

    # --- FunctionConfigUtils.doPythonChecks ---
    if guarantees == "EFFECTIVELY_ONCE":
        raise fail("processingGuarantees", "Effectively-once processing guarantees not yet supported in Python")
    if retries is not None and retries >= 0:
        raise fail("maxMessageRetries", "Message retries not yet supported in python")

    # Admin-side autoAck rule (docs/pulsar-functions.md §2.2): ATMOST_ONCE acks on receipt, so autoAck=false is refused.
    auto_ack = raw.get("autoAck")
    auto_ack = True if auto_ack is None else auto_ack
    if guarantees == "ATMOST_ONCE" and not auto_ack:
        raise fail("autoAck", "Cannot disable autoAck with ATMOST_ONCE processing guarantees")
    # The C++ client refuses an ack timeout below 10 s, so the official instance would die at
    # subscribe (docs/pulsar-functions.md §2.1); refuse it up front instead of crash-looping.
    if timeout_ms is not None and timeout_ms < 10_000:
        raise fail("timeoutMs", f"{timeout_ms} ms is below the Pulsar client's 10000 ms minimum ack timeout; "
                                "the Python instance cannot subscribe with it")

    position = (raw.get("subscriptionPosition") or "Latest").upper()
    if position not in ("LATEST", "EARLIEST"):
        raise fail("subscriptionPosition", f"{raw['subscriptionPosition']!r} is not Latest or Earliest")

    producer = raw.get("producerConfig") or {}
    for key in producer:
        if key not in PRODUCER_CONFIG_KEYS:
            raise fail(f"producerConfig.{key}", f'Unrecognized field "{key}" (not a ProducerConfig field)')
    compression = (producer.get("compressionType") or "LZ4").upper()
    if compression not in COMPRESSIONS:
        raise fail("producerConfig.compressionType", f"{compression!r} is not one of {', '.join(COMPRESSIONS)}")
    batch_builder = (producer.get("batchBuilder") or raw.get("batchBuilder") or "DEFAULT").upper()
    if batch_builder not in ("DEFAULT", "KEY_BASED"):
        raise fail("batchBuilder", f"{batch_builder!r} is not DEFAULT or KEY_BASED")
    if raw.get("outputSerdeClassName") and raw.get("outputSchemaType"):
        raise fail("outputSchemaType", "Only one of outputSchemaType or outputSerdeClassName should be set")

    return FunctionSpec(
        tenant=tenant,
        namespace=namespace,
        name=name,
        class_name=class_name,
        py=py,
        inputs=specs,
        output=output,
        output_serde_class_name=raw.get("outputSerdeClassName") or "",
        output_schema_type=raw.get("outputSchemaType") or "",
        input_type_class_name=raw.get("inputTypeClassName") or "",
        output_type_class_name=raw.get("outputTypeClassName") or "",
        log_topic=log_topic,
        processing_guarantees=guarantees,
        auto_ack=auto_ack,
        retain_ordering=bool(raw.get("retainOrdering")),
        retain_key_ordering=bool(raw.get("retainKeyOrdering")),
        subscription_name=raw.get("subName") or "",
        subscription_position=position,
        timeout_ms=timeout_ms,
        user_config=raw.get("userConfig"),
        secrets=raw.get("secrets"),
        parallelism=parallelism or 1,
        compression_type=compression,
        batch_builder=batch_builder,
        source_file=str(path),
    )


def _input_spec(conf: Any, path: Path, topic: str) -> InputSpec:
    where = f"inputSpecs.{topic}"
    if conf is None:
        conf = {}
    if not isinstance(conf, dict):
        raise ConfigError(path, where, f"expected a ConsumerConfig mapping, got {conf!r}")
    for key in conf:
        if key not in CONSUMER_CONFIG_KEYS:
            raise ConfigError(path, f"{where}.{key}", f'Unrecognized field "{key}" (not a ConsumerConfig field)')
    if conf.get("schemaType") and conf.get("serdeClassName"):
        raise ConfigError(path, where, "Only one of schemaType or serdeClassName should be set in inputSpec")
    rqs = conf.get("receiverQueueSize")
    if isinstance(rqs, dict):  # FunctionDetails JSON form {value: N}
        rqs = rqs.get("value")
    if rqs is not None and (isinstance(rqs, bool) or not isinstance(rqs, int)):
        raise ConfigError(path, f"{where}.receiverQueueSize", f"expected an integer, got {rqs!r}")
    if conf.get("cryptoConfig") is not None:
        raise ConfigError(path, f"{where}.cryptoConfig", "end-to-end encryption is not supported by localrun")
    regex = conf.get("isRegexPattern", conf.get("regexPattern", False))
    return InputSpec(
        serde_class_name=str(conf.get("serdeClassName") or ""),
        schema_type=str(conf.get("schemaType") or ""),
        is_regex=bool(regex),
        receiver_queue_size=rqs,
        schema_properties={str(k): str(v) for k, v in (conf.get("schemaProperties") or {}).items()},
    )


def _custom_schema_input(value: Any, path: Path, topic: str) -> InputSpec:
    """customSchemaInputs values are a ConsumerConfig JSON string (newer CLI) or a bare schema type."""
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            conf = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError(path, f"customSchemaInputs.{topic}",
                              f"Topic {topic} has an incorrect schema Info") from exc
        return _input_spec(conf, path, topic)
    return InputSpec(schema_type=str(value))


def _check_resources(resources: dict[str, Any] | None, fail: Any) -> None:
    if resources is None:
        return
    for key, value in resources.items():
        if key not in RESOURCES_KEYS:
            raise fail(f"resources.{key}", f'Unrecognized field "{key}" (not a Resources field)')
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
            raise fail(f"resources.{key}", f"must be a positive number, got {value!r}")


def _resolve_py(py: str, config_path: Path, fail: Any, field_name: str, class_name: str, *,
                near_config: bool) -> str:
    """Pulsar's CLI resolves `py` against the working directory. A `py` written in the file is also
    looked up from the config file's folder and each folder above it, so `deploy/functions/*.yaml`
    (whose `py` is relative to the repo root) work from any directory; `--py` is not (`near_config`)."""
    if py.startswith(("http://", "https://", "function://", "builtin://")):
        raise fail(field_name, f"{py}: localrun loads local files only (a .py or .zip path or file:// URL)")
    if py.startswith("file://"):
        py = py[len("file://"):]
    if ".." in Path(py).parts and not Path(py).exists():
        raise fail(field_name, f"Invalid filename: {py}")
    candidates = [Path(py)]
    if near_config and not Path(py).is_absolute():
        folder = config_path.resolve().parent
        candidates += [directory / py for directory in (folder, *folder.parents)]
    for candidate in candidates:
        if candidate.is_file():
            if candidate.suffix not in (".py", ".zip"):
                raise fail(field_name, f"{py}: localrun loads .py files and .zip packages")
            return str(candidate.resolve())
    if Path(py).suffix == ".zip":
        # The deployable archive is built, not checked in (deploy/packaging.py): say how to get it,
        # or how to run the same code without it.
        raise fail(field_name, f"{py} does not exist: run `make package` to build it, or run from source "
                               f"with --py functions/{module_of(class_name)}.py")
    raise fail(field_name, f"The supplied python file does not exist: {py}")


def module_of(class_name: str) -> str:
    """The module a `className` is imported from (docs/pulsar-functions.md §1.1), as its first dotted part: `transcode` for
    `transcode.TranscodeFunction`. FunctionConfigs in this repo use `module.Class` or `module`."""
    return class_name.split(".", 1)[0]


def source_py(config: Mapping[str, Any] | str | os.PathLike[str], functions_dir: str | os.PathLike[str]) -> str:
    """The source file that runs a function without its archive: `<functions_dir>/<module>.py`, where
    module is the first part of `className`. Pass it as `--py` (or `py=` / `py_overrides`).

    `config` is a parsed FunctionConfig or the path of its YAML; a missing `className` raises
    `ConfigError`, a missing source file does not (loading the config reports it).
    """
    if isinstance(config, Mapping):
        raw: Any = config
        where: str | os.PathLike[str] = "<config>"
    else:
        where = config
        try:
            raw = yaml.safe_load(Path(config).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(config, "(file)", f"cannot read className: {exc}") from exc
    class_name = raw.get("className") if isinstance(raw, Mapping) else None
    if not isinstance(class_name, str) or not class_name:
        raise ConfigError(where, "className", "required to find the function's source file")
    return str(Path(functions_dir) / f"{module_of(class_name)}.py")
