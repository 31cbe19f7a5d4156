"""The fields of Pulsar's FunctionConfig: one table, read by `localrun/config.py` and `deploy/function_config.py`.

A FunctionConfig file is the YAML that `pulsar-admin functions create|localrun --function-config-file`
reads into the Java `FunctionConfig` bean; Jackson refuses a key the bean lacks. `FIELDS` lists every
key with its type, and `CONSUMER_FIELDS`, `PRODUCER_FIELDS` and `RESOURCES_FIELDS` the nested beans, so
a field Pulsar adds is one edit here. Each reader adds its own rules on top: localrun what our local
runtime needs (and, like Pulsar's CLI, takes enum spellings in any case); deploy what a cluster's admin
server rejects for a Python function, with Jackson's exact spellings.

A checker looks at one value at a dotted path and returns (path, message) pairs, empty when it is right.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeGuard, get_args

Finding = tuple[str, str]
Checker = Callable[[Any, str], list[Finding]]

Guarantee = Literal["ATLEAST_ONCE", "ATMOST_ONCE", "EFFECTIVELY_ONCE", "MANUAL"]
GUARANTEES: tuple[Guarantee, ...] = get_args(Guarantee)
# The consumer type the instance subscribes with (localrun's FunctionSpec.subscription_type).
SubscriptionType = Literal["Failover", "KeyShared", "Shared"]
COMPRESSION_TYPES = ("NONE", "LZ4", "ZLIB", "ZSTD", "SNAPPY")
BATCH_BUILDERS = ("DEFAULT", "KEY_BASED")
SUBSCRIPTION_POSITIONS = ("Latest", "Earliest")
LOG_LEVELS = ("OFF", "FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE", "ALL")


def is_guarantee(value: object) -> TypeGuard[Guarantee]:
    return value in GUARANTEES


def type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a map", type(None): "empty (null)"}.get(type(value), type(value).__name__)  # fmt: skip


def _scalar(expected: str, test: Callable[[Any], bool]) -> Checker:
    def check(value: Any, path: str) -> list[Finding]:
        return [] if test(value) else [(path, f"should be {expected}, is {type_name(value)}")]

    return check


# YAML booleans are Python bools, which are also ints: a Java Integer/Long field rejects `true`.
STR = _scalar("a string", lambda v: isinstance(v, str))
BOOL = _scalar("a boolean", lambda v: isinstance(v, bool))
INT = _scalar("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
NUMBER = _scalar("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool))
ANY: Checker = lambda value, path: []  # noqa: E731 - userConfig values are free JSON


def enum(*allowed: str) -> Checker:
    """A Java enum field: Jackson matches the constant's exact spelling."""

    def check(value: Any, path: str) -> list[Finding]:
        if not isinstance(value, str):
            return [(path, f"should be one of {', '.join(allowed)}, is {type_name(value)}")]
        if value not in allowed:
            return [(path, f"{value!r} is not one of {', '.join(allowed)}")]
        return []

    return check


def list_of(item: Checker) -> Checker:
    def check(value: Any, path: str) -> list[Finding]:
        if not isinstance(value, list):
            return [(path, f"should be a list, is {type_name(value)}")]
        return [f for i, v in enumerate(value) for f in item(v, f"{path}[{i}]")]

    return check


def map_of(item: Checker) -> Checker:
    """A Java Map<String, X>: keys must be strings (YAML would happily give ints)."""

    def check(value: Any, path: str) -> list[Finding]:
        if not isinstance(value, dict):
            return [(path, f"should be a map, is {type_name(value)}")]
        found: list[Finding] = []
        for k, v in value.items():
            if not isinstance(k, str):
                found.append((f"{path}.{k}", f"key should be a string, is {type_name(k)}"))
            found.extend(item(v, f"{path}.{k}"))
        return found

    return check


def record(fields: Mapping[str, Checker], what: str) -> Checker:
    """A nested bean: unknown keys fail like unknown top-level fields do."""

    def check(value: Any, path: str) -> list[Finding]:
        if not isinstance(value, dict):
            return [(path, f"should be a map ({what}), is {type_name(value)}")]
        found: list[Finding] = []
        for k, v in value.items():
            if k not in fields:
                found.append((f"{path}.{k}", f"unknown {what} field (known: {', '.join(sorted(fields))})"))
            else:
                found.extend(fields[k](v, f"{path}.{k}"))
        return found

    return check


# inputSpecs values: the ConsumerConfig bean.
CONSUMER_FIELDS: dict[str, Checker] = {
    "schemaType": STR, "serdeClassName": STR, "isRegexPattern": BOOL, "regexPattern": STR,
    "receiverQueueSize": INT, "schemaProperties": map_of(STR), "consumerProperties": map_of(STR),
    "cryptoConfig": map_of(ANY), "poolMessages": BOOL, "messagePayloadProcessorConfig": map_of(ANY),
}  # fmt: skip

# producerConfig: the ProducerConfig bean.
PRODUCER_FIELDS: dict[str, Checker] = {
    "maxPendingMessages": INT, "maxPendingMessagesAcrossPartitions": INT, "useThreadLocalProducers": BOOL,
    "cryptoConfig": map_of(ANY), "batchBuilder": enum(*BATCH_BUILDERS), "compressionType": enum(*COMPRESSION_TYPES),
    "batchingConfig": map_of(ANY),
}  # fmt: skip

# resources: cpu is a Double, ram and disk are Longs (bytes).
RESOURCES_FIELDS: dict[str, Checker] = {"cpu": NUMBER, "ram": INT, "disk": INT}

# Every key of the FunctionConfig bean, with its type. `runtime` is a bean field too (the CLI infers it
# from `py`); only PYTHON makes sense for our functions.
FIELDS: dict[str, Checker] = {
    "tenant": STR, "namespace": STR, "name": STR, "fqfn": STR, "className": STR,
    "py": STR, "jar": STR, "go": STR, "runtime": enum("PYTHON"), "functionType": STR,
    "inputs": list_of(STR), "topicsPattern": STR,
    "customSerdeInputs": map_of(STR), "customSchemaInputs": map_of(STR),
    "inputSpecs": map_of(record(CONSUMER_FIELDS, "input spec")),
    "output": STR, "outputSerdeClassName": STR, "outputSchemaType": STR, "customSchemaOutputs": map_of(STR),
    "inputTypeClassName": STR, "outputTypeClassName": STR,
    "producerConfig": record(PRODUCER_FIELDS, "producer config"), "batchBuilder": enum(*BATCH_BUILDERS),
    "logTopic": STR, "logLevel": enum(*LOG_LEVELS),
    "processingGuarantees": enum(*GUARANTEES),
    "retainOrdering": BOOL, "retainKeyOrdering": BOOL, "autoAck": BOOL,
    "userConfig": map_of(ANY), "secrets": map_of(ANY),
    "subName": STR, "subscriptionPosition": enum(*SUBSCRIPTION_POSITIONS), "skipToLatest": BOOL,
    "cleanupSubscription": BOOL, "forwardSourceMessageProperty": BOOL,
    "timeoutMs": INT, "maxMessageRetries": INT, "deadLetterTopic": STR,
    "parallelism": INT, "resources": record(RESOURCES_FIELDS, "resources"), "runtimeFlags": STR,
    "customRuntimeOptions": STR, "windowConfig": map_of(ANY),
    "maxPendingAsyncRequests": INT, "exposePulsarAdminClientEnabled": BOOL,
}  # fmt: skip

# Bean fields for the other runtimes: a Python function has no use for them.
NOT_FOR_PYTHON = {"jar": "Java", "go": "Go", "maxPendingAsyncRequests": "Java",
                  "exposePulsarAdminClientEnabled": "Java"}  # fmt: skip
