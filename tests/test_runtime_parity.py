"""The same probe function under `wtpulsar functions localrun` and under Pulsar's own runtime.

`runtime` is "ours" (our localrun) or "pulsar" (`bin/pulsar-admin functions localrun`, Pulsar's
Python instance); both run tests/runtime_probes/parity_probe.py unchanged against the same Apache
Pulsar standalone, each in a namespace of its own, fed the same commands. What each runtime did is
observed once per module (`observed`): outputs, the side topic, the log topic, state, the input
subscriptions' backlog per processing guarantee, the instance's Prometheus series. Each test checks
one behaviour on each runtime, and `test_runtimes_agree` compares the two observations whole.
Differences found are fixed in localrun/ or listed in localrun/README.md.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pulsar
import pytest
import yaml

from realpulsar.standalone import Standalone
from tests.broker_process import free_port
from tests.realpulsar_support import rest, wait_subscribed
from tests.test_realpulsar_localrun import official_localrun, our_localrun

pytestmark = pytest.mark.pulsar

PROBE = Path(__file__).resolve().parent / "runtime_probes" / "parity_probe.py"
RUNTIMES = ("ours", "pulsar")
KEY, PROPS, EVENT_TIME = "pk", {"q": "1"}, 777
# (command, what the output topic gets for it, in order; None: no output message)
COMMANDS: list[tuple[str, str | None]] = [
    ("echo:hello", "hello"),
    ("42", "int:42"),  # IdentitySerDe turns numeric text into numbers
    ("3.5", "float:3.5"),
    ("none", None),
    ("fail", None),  # nacked, redelivered every minute, never answered
    ("failonce:a", None),  # answered when it comes back (see REDELIVERED)
    ("count:c", "counter:1"),
    ("count:c", "counter:2"),
    ("del:c", "after-del:None"),
    ("put:s:v1", "state:b'v1'"),
    ("publish:SIDE", None),
    ("log:x", None),
    ("metric:probe_latency:5", "recorded:probe_latency"),
]
REDELIVERED = "ok:a"
ATMOST_COMMANDS = ["fail", "echo:after"]
DIRECT = [c for c in COMMANDS if c[1] is not None]


def write_config(folder: Path, namespace: str, name: str, guarantee: str, suffix: str = "") -> Path:
    ns = f"public/{namespace}"
    config = {
        "tenant": "public", "namespace": namespace, "name": name, "className": "parity_probe.ParityProbe",
        "py": str(PROBE), "inputs": [f"persistent://{ns}/in{suffix}"], "output": f"persistent://{ns}/out{suffix}",
        "logTopic": f"persistent://{ns}/logs{suffix}", "processingGuarantees": guarantee, "autoAck": True,
        "parallelism": 1, "userConfig": {"greeting": "hi"}, "secrets": {"token": "s3cret"},
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TIMESTAMP = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}\] ")


def normalise(value: Any, namespace: str) -> Any:
    """Each runtime has its own namespace: name it alike everywhere it appears; random UUIDs alike."""
    if isinstance(value, str):
        return "UUID" if UUID.match(value) else value.replace(f"/{namespace}/", "/NS/").replace(namespace, "NS")
    if isinstance(value, dict):
        return {normalise(k, namespace): normalise(v, namespace) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [normalise(v, namespace) for v in value]
    return value


def read(consumer: pulsar.Consumer, count: int, timeout: float) -> list[pulsar.Message]:
    got: list[pulsar.Message] = []
    deadline = time.monotonic() + timeout
    while len(got) < count and time.monotonic() < deadline:
        try:
            msg = consumer.receive(1000)
        except pulsar.Timeout:
            continue
        consumer.acknowledge(msg)
        got.append(msg)
    return got


# Left out of the comparison: prometheus_client's `*_created` samples (localrun/README.md), and the
# exception gauges, present only while an exception of the current minute is reported (tested in
# tests/test_localrun_metrics.py).
SKIPPED_SERIES = re.compile(r"_created$|^pulsar_function_(user|system)_exception$")


def metric_series(port: int) -> dict[str, list[str]]:
    """Prometheus families of the instance: name -> sorted label names (user metrics included)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    series: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, rest = line.partition("{")
        labels = {part.split("=", 1)[0] for part in rest.split("}", 1)[0].split(",") if "=" in part} if rest else set()
        series.setdefault(name.split(" ")[0], set()).update(labels)
    return {name: sorted(labels) for name, labels in series.items()
            if name.startswith("pulsar_function") and not SKIPPED_SERIES.search(name)}


def backlog(standalone: Standalone, namespace: str, topic: str) -> tuple[int, int]:
    """(msgBacklog, unacked messages) of the function's subscription on an input topic."""
    status, stats = rest(standalone, "GET", f"/admin/v2/persistent/public/{namespace}/{topic}/stats")
    assert status == 200, stats
    [sub] = stats["subscriptions"].values()
    return sub["msgBacklog"], sum(c.get("unackedMessages", 0) for c in sub["consumers"])


def observe(runtime: str, standalone: Standalone, folder: Path) -> dict[str, Any]:
    namespace = f"parity{runtime}{int(time.time()) % 100000}"
    ns = f"public/{namespace}"
    status, body = rest(standalone, "PUT", f"/admin/v2/namespaces/{ns}")
    assert status == 204, body
    least = write_config(folder, namespace, "probe", "ATLEAST_ONCE")
    most = write_config(folder, namespace, "probemost", "ATMOST_ONCE", suffix="-most")
    ports = {"probe": free_port(), "probemost": free_port()}
    client = pulsar.Client(standalone.service_url, logger=pulsar.ConsoleLogger(pulsar.LoggerLevel.Error))
    observed: dict[str, Any] = {}
    try:
        watch = {name: client.subscribe(f"persistent://{ns}/{name}", "watch", initial_position=pulsar.InitialPosition.Earliest)
                 for name in ("out", "out-most", "side", "logs")}
        with ExitStack() as stack:
            for config, name in ((least, "probe"), (most, "probemost")):
                sub = folder / name
                sub.mkdir()
                if runtime == "ours":
                    stack.enter_context(our_localrun(standalone, config, sub, metrics_port=ports[name]))
                else:
                    stack.enter_context(official_localrun(standalone, config, sub, state_url=f"bk://127.0.0.1:{standalone.ports.stream_storage}",
                                                          metrics_port=ports[name]))
            wait_subscribed(standalone, ["in", "in-most"], namespace=namespace, timeout=180)
            producer = client.create_producer(f"persistent://{ns}/in", batching_enabled=False)
            for command, _ in [("ctx", None), ("api", None), *COMMANDS]:
                command = command.replace("SIDE", f"persistent://{ns}/side")
                producer.send(command.encode(), partition_key=KEY, properties=PROPS, event_timestamp=EVENT_TIME)
            most_producer = client.create_producer(f"persistent://{ns}/in-most", batching_enabled=False)
            for command in ATMOST_COMMANDS:
                most_producer.send(command.encode())
            outputs = read(watch["out"], 2 + len(DIRECT) + 1, timeout=150)  # the failonce answer takes a nack delay (60 s)
            observed["context"] = json.loads(outputs[0].data()) if outputs else None
            observed["api"] = json.loads(outputs[1].data()) if len(outputs) > 1 else {"missing": None, "beyond": None}
            observed["outputs"] = [m.data().decode() for m in outputs[2:]]
            observed["output_properties"] = sorted(outputs[2].properties()) if len(outputs) > 2 else None
            observed["output_input_topic"] = outputs[2].properties().get("__pfn_input_topic__") if len(outputs) > 2 else None
            observed["output_key_and_time"] = (outputs[2].partition_key(), outputs[2].event_timestamp()) if len(outputs) > 2 else None
            observed["most_outputs"] = [m.data().decode() for m in read(watch["out-most"], 1, timeout=30)]
            side = read(watch["side"], 1, timeout=30)
            observed["side"] = [(m.data().decode(), m.partition_key(), m.properties(), m.event_timestamp()) for m in side]
            logs = read(watch["logs"], 1000, timeout=8)  # all there is: the log lines come in batches
            # Each record's first line without its time stamp (tracebacks name each runtime's files).
            observed["logs"] = [TIMESTAMP.sub("", m.data().decode()).splitlines()[0] for m in logs][:4]
            observed["log_properties"] = sorted({key for m in logs for key in m.properties()})
            time.sleep(2)  # grouped acknowledgements reach the broker
            observed["backlog"] = {"ATLEAST_ONCE": backlog(standalone, namespace, "in"),
                                   "ATMOST_ONCE": backlog(standalone, namespace, "in-most")}
            observed["metrics"] = metric_series(ports["probe"])
    finally:
        client.close()
    result = normalise(observed, namespace)
    print(f"[parity] {runtime}: {json.dumps(result, sort_keys=True, default=repr)}", flush=True)
    return dict(result)


@pytest.fixture(scope="module")
def observed(real_pulsar: Standalone, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Any]]:
    """Both runtimes are observed at once, on first use: each spends most of its time waiting out the same
    60 s nack delay (the failonce command), in a namespace and with ports of its own."""
    cache: dict[str, dict[str, Any]] = {}

    def one(runtime: str) -> dict[str, Any]:
        started = time.monotonic()
        result = observe(runtime, real_pulsar, tmp_path_factory.mktemp(f"parity-{runtime}"))
        print(f"[parity] {runtime}: observed in {time.monotonic() - started:.0f} s", flush=True)
        return result

    def get(runtime: str) -> dict[str, Any]:
        if not cache:
            with ThreadPoolExecutor(max_workers=len(RUNTIMES)) as pool:
                cache.update(zip(RUNTIMES, pool.map(one, RUNTIMES), strict=True))
        return cache[runtime]

    return get


@pytest.fixture(params=RUNTIMES)
def runtime(request: pytest.FixtureRequest, observed: Callable[[str], dict[str, Any]]) -> dict[str, Any]:
    return observed(request.param)


def test_context_getters(runtime: dict[str, Any]) -> None:
    assert runtime["context"] == {
        "key": KEY, "partition_key": KEY, "ordering_key": None, "eventtime": EVENT_TIME, "properties": PROPS,
        "topic": "persistent://public/NS/in", "partition": -1, "tenant": "public", "namespace": "NS",
        "name": "probe", "instance_id": "0", "instance_id_type": "str", "function_id": "UUID", "function_version": "UUID",
        "user_config_map": {"greeting": "hi"}, "greeting": "hi", "missing_config": None,
        "input_topics": ["persistent://public/NS/in"], "secret": "s3cret", "logger": "RootLogger",
    }


def test_outputs_serde_state_and_nack_redelivery(runtime: dict[str, Any]) -> None:
    # In input order, then the failonce input's answer after its redelivery (60 s nack delay).
    assert runtime["outputs"] == [want for _, want in DIRECT] + [REDELIVERED]


def test_output_message_carries_only_the_input_reference(runtime: dict[str, Any]) -> None:
    assert runtime["output_properties"] == ["__pfn_input_msg_id__", "__pfn_input_topic__"]
    assert runtime["output_input_topic"] == "persistent://public/NS/in"
    assert runtime["output_key_and_time"] == ["", 0]


def test_context_publish_with_message_conf(runtime: dict[str, Any]) -> None:
    assert runtime["side"] == [["side", "k1", {"p": "v"}, 1234]]


def test_log_topic(runtime: dict[str, Any]) -> None:
    # What process() logs, the runtime's own report of its exceptions included, in order.
    assert runtime["logs"] == ["[ERROR]: Exception while executing user method"] * 2 + ["[INFO]: logged x", "[WARNING]: warned x"]
    assert runtime["log_properties"] == []


def test_context_api(runtime: dict[str, Any]) -> None:
    assert runtime["api"]["missing"] == []  # every method of pulsar.Context


def test_ack_per_guarantee(runtime: dict[str, Any]) -> None:
    # At least once: the failing input stays unacknowledged (nacked, redelivered forever).
    # At most once: acknowledged before processing, so nothing is left.
    assert runtime["backlog"]["ATLEAST_ONCE"][0] == 1
    assert runtime["backlog"]["ATMOST_ONCE"] == [0, 0]
    assert runtime["most_outputs"] == ["after"]


def test_metric_names(runtime: dict[str, Any]) -> None:
    names = set(runtime["metrics"])
    assert {"pulsar_function_received_total", "pulsar_function_processed_successfully_total",
            "pulsar_function_user_exceptions_total"} <= names, sorted(names)
    assert runtime["metrics"]["pulsar_function_user_metric_count"] == ["cluster", "fqfn", "instance_id", "metric", "name",
                                                                       "namespace", "tenant"]


# Listed in localrun/README.md: each runtime's own helper methods on the context object (both also
# have get_message_partition_index, get_message_sequence_id and get_pulsar_client, which
# pulsar.Context does not declare).
BEYOND = {"ours": ["close_producers", "set_current_message"],
          "pulsar": ["callback_wrapper", "get_and_reset_metrics", "get_metrics", "reset_metrics", "set_current_message_context"]}


def test_runtimes_agree(observed: Callable[[str], dict[str, Any]]) -> None:
    ours, theirs = observed("ours"), observed("pulsar")
    mine, real = set(ours["api"]["beyond"]), set(theirs["api"]["beyond"])
    assert (sorted(mine - real), sorted(real - mine)) == (BEYOND["ours"], BEYOND["pulsar"])
    ours, theirs = {**ours, "api": ours["api"]["missing"]}, {**theirs, "api": theirs["api"]["missing"]}
    differing = {key: (ours.get(key), theirs.get(key)) for key in sorted(set(ours) | set(theirs)) if ours.get(key) != theirs.get(key)}
    assert differing == {}
