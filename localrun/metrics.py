"""Per-instance statistics and their Prometheus endpoint (pulsar-functions.md §6).

`InstanceStats` is the clock-free core: callers pass the time in. The collector renders it with
the official series names and labels (`tenant`, `namespace` = tenant/ns, `name`, `instance_id`,
`cluster`, `fqfn`), so dashboards built for Pulsar's Python instance work unchanged:

* `pulsar_function_received_total`, `…_processed_successfully_total`, `…_user_exceptions_total`,
  `…_system_exceptions_total`, `pulsar_function_process_latency_ms` (summary), `…_last_invocation`;
* the `*_1min` versions, reset every 60 s;
* `pulsar_function_user_exception` / `…_system_exception` gauges labelled `error` (≤ 5 per minute);
* `pulsar_function_user_metric_{count,sum}` labelled `metric`, from `context.record_metric`.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

PREFIX = "pulsar_function_"
LABELS = ["tenant", "namespace", "name", "instance_id", "cluster", "fqfn"]
WINDOW_S = 60.0  # the "1min" series reset period
MAX_EXCEPTION_REPORTS_PER_WINDOW = 5  # official instance rate-limits exception gauges
LATEST_EXCEPTIONS_KEPT = 10  # what GetFunctionStatus returns


@dataclass
class Window:
    received: int = 0
    processed: int = 0
    user_exceptions: int = 0
    system_exceptions: int = 0
    latency_sum_ms: float = 0.0
    latency_count: int = 0


@dataclass
class ExceptionReport:
    message: str
    timestamp_ms: int


@dataclass
class InstanceStats:
    """Counters of one instance. Thread-safe: the listener, the execution thread and producer
    callbacks all update it."""

    total: Window = field(default_factory=Window)
    window: Window = field(default_factory=Window)
    window_start: float = 0.0
    last_invocation_ms: int = 0
    user_metrics: dict[str, tuple[int, float]] = field(default_factory=dict)
    latest_user_exceptions: deque[ExceptionReport] = field(
        default_factory=lambda: deque(maxlen=LATEST_EXCEPTIONS_KEPT))
    latest_system_exceptions: deque[ExceptionReport] = field(
        default_factory=lambda: deque(maxlen=LATEST_EXCEPTIONS_KEPT))
    # Exception messages currently exposed as gauges in this window.
    user_exception_gauges: list[str] = field(default_factory=list)
    system_exception_gauges: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def roll(self, now: float) -> None:
        """Start a new 1-minute window if the current one is over."""
        with self._lock:
            if now - self.window_start >= WINDOW_S:
                self.window = Window()
                self.window_start = now
                self.user_exception_gauges.clear()
                self.system_exception_gauges.clear()

    def received(self) -> None:
        with self._lock:
            self.total.received += 1
            self.window.received += 1

    def processed(self, latency_ms: float) -> None:
        with self._lock:
            for w in (self.total, self.window):
                w.processed += 1
                w.latency_sum_ms += latency_ms
                w.latency_count += 1

    def invoked(self, now: float) -> None:
        with self._lock:
            self.last_invocation_ms = int(now * 1000)

    def user_exception(self, exc: BaseException, now: float) -> None:
        with self._lock:
            self.total.user_exceptions += 1
            self.window.user_exceptions += 1
            self._report(self.latest_user_exceptions, self.user_exception_gauges, exc, now)

    def system_exception(self, exc: BaseException, now: float) -> None:
        with self._lock:
            self.total.system_exceptions += 1
            self.window.system_exceptions += 1
            self._report(self.latest_system_exceptions, self.system_exception_gauges, exc, now)

    def _report(self, latest: deque[ExceptionReport], gauges: list[str], exc: BaseException, now: float) -> None:
        latest.append(ExceptionReport(str(exc), int(now * 1000)))
        if len(gauges) < MAX_EXCEPTION_REPORTS_PER_WINDOW and str(exc) not in gauges:
            gauges.append(str(exc))

    def record_metric(self, name: str, value: float) -> None:
        with self._lock:
            count, total = self.user_metrics.get(name, (0, 0.0))
            self.user_metrics[name] = (count + 1, total + float(value))

    def snapshot(self) -> dict[str, object]:
        """A `functions status`-like view of this instance."""
        with self._lock:
            avg = self.total.latency_sum_ms / self.total.latency_count if self.total.latency_count else 0.0
            return {
                "numReceived": self.total.received,
                "numSuccessfullyProcessed": self.total.processed,
                "numUserExceptions": self.total.user_exceptions,
                "numSystemExceptions": self.total.system_exceptions,
                "averageLatency": avg,
                "lastInvocationTime": self.last_invocation_ms,
                "latestUserExceptions": [
                    {"exceptionString": e.message, "msSinceEpoch": e.timestamp_ms} for e in self.latest_user_exceptions],
                "latestSystemExceptions": [
                    {"exceptionString": e.message, "msSinceEpoch": e.timestamp_ms}
                    for e in self.latest_system_exceptions],
            }


class StatsCollector(Collector):
    """Renders `InstanceStats` in the official series layout."""

    def __init__(self, stats: InstanceStats, tenant: str, namespace: str, name: str, instance_id: str,
                 cluster: str, clock: object | None = None) -> None:
        self.stats = stats
        self.label_values = [tenant, f"{tenant}/{namespace}", name, instance_id, cluster, f"{tenant}/{namespace}/{name}"]
        self.clock = clock  # a callable returning epoch seconds, used to roll the 1-minute window

    def collect(self) -> Iterator[object]:
        if callable(self.clock):
            self.stats.roll(self.clock())
        s = self.stats
        lv = self.label_values
        with s._lock:
            total, window = s.total, s.window
            for suffix, attr, doc in (
                ("received", "received", "Total number of messages received from source."),
                ("processed_successfully", "processed", "Total number of messages processed successfully."),
                ("user_exceptions", "user_exceptions", "Total number of user exceptions."),
                ("system_exceptions", "system_exceptions", "Total number of system exceptions."),
            ):
                fam = CounterMetricFamily(f"{PREFIX}{suffix}", doc, labels=LABELS)
                fam.add_metric(lv, getattr(total, attr))
                yield fam
                fam = CounterMetricFamily(f"{PREFIX}{suffix}_1min", f"{doc} (in the last minute)", labels=LABELS)
                fam.add_metric(lv, getattr(window, attr))
                yield fam
            lat = SummaryMetricFamily(f"{PREFIX}process_latency_ms", "Process latency in milliseconds.", labels=LABELS)
            lat.add_metric(lv, count_value=total.latency_count, sum_value=total.latency_sum_ms)
            yield lat
            lat = SummaryMetricFamily(f"{PREFIX}process_latency_ms_1min",
                                      "Process latency in milliseconds in the last minute.", labels=LABELS)
            lat.add_metric(lv, count_value=window.latency_count, sum_value=window.latency_sum_ms)
            yield lat
            last = GaugeMetricFamily(f"{PREFIX}last_invocation", "The timestamp of the last invocation of the function.",
                                     labels=LABELS)
            last.add_metric(lv, s.last_invocation_ms)
            yield last
            for kind, gauges in (("user", s.user_exception_gauges), ("system", s.system_exception_gauges)):
                fam = GaugeMetricFamily(f"{PREFIX}{kind}_exception", f"Exception from {kind} code.",
                                        labels=[*LABELS, "error"])
                for message in gauges:
                    fam.add_metric([*lv, message], 1.0)
                yield fam
            user = SummaryMetricFamily(f"{PREFIX}user_metric", "Pulsar Function user defined metric",
                                       labels=[*LABELS, "metric"])
            for metric_name, (count, total_value) in sorted(s.user_metrics.items()):
                user.add_metric([*lv, metric_name], count_value=count, sum_value=total_value)
            yield user


def build_registry(collector: StatsCollector) -> object:
    """A registry with our collector plus the default process/platform/GC collectors."""
    from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve(registry: object, port: int, host: str = "127.0.0.1") -> tuple[object, int]:
    """Start the Prometheus HTTP endpoint in a daemon thread; returns (server, bound port)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)  # type: ignore[arg-type]
    return server, int(server.server_address[1])


def parse_instance_metrics(text: str) -> dict[str, float]:
    """Totals of one instance's endpoint, keyed by series name (used by `functions status`)."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith(PREFIX) and "error" not in sample.labels and "metric" not in sample.labels:
                out[sample.name] = sample.value
    return out


def parse_exception_gauges(text: str) -> dict[str, list[str]]:
    """The `error` labels of the user/system exception gauges: {"user": [...], "system": [...]}."""
    from prometheus_client.parser import text_string_to_metric_families

    out: dict[str, list[str]] = {"user": [], "system": []}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            for kind in ("user", "system"):
                if sample.name == f"{PREFIX}{kind}_exception" and "error" in sample.labels:
                    out[kind].append(sample.labels["error"])
    return out
