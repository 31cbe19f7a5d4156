"""Per-instance statistics and their Prometheus endpoint (docs/pulsar-functions.md §6).

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
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

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


class InstanceStats:
    """Counters of one instance.

    The per-message counters (`received`, `processed`) are plain attributes written by one
    thread only, the execution thread, so the hot path takes no lock (a lock per message cost
    measurably in bench/localrun.py). When several receiving threads feed the queue they count
    through `received_shared()`, which locks. Readers (the metrics endpoint, status) may see a
    value one message old, never a torn one. The 1-minute window is the totals minus a snapshot
    taken when the window started, so rolling it never races with an increment. Exceptions and
    user metrics are rare and come from several threads: they lock.
    """

    def __init__(self, window_start: float = 0.0) -> None:
        self.n_received = 0
        self.n_processed = 0
        self.latency_sum_ms = 0.0
        self.n_user_exceptions = 0
        self.n_system_exceptions = 0
        self.window_start = window_start
        self._window_base = Window()
        self.last_invocation_ms = 0
        self.user_metrics: dict[str, tuple[int, float]] = {}
        self.latest_user_exceptions: deque[ExceptionReport] = deque(maxlen=LATEST_EXCEPTIONS_KEPT)
        self.latest_system_exceptions: deque[ExceptionReport] = deque(maxlen=LATEST_EXCEPTIONS_KEPT)
        # Exception messages currently exposed as gauges in this window.
        self.user_exception_gauges: list[str] = []
        self.system_exception_gauges: list[str] = []
        self._lock = threading.Lock()

    @property
    def total(self) -> Window:
        """Everything since the instance started."""
        return Window(self.n_received, self.n_processed, self.n_user_exceptions, self.n_system_exceptions,
                      self.latency_sum_ms, self.n_processed)

    @property
    def window(self) -> Window:
        """The current 1-minute window."""
        total, base = self.total, self._window_base
        return Window(total.received - base.received, total.processed - base.processed,
                      total.user_exceptions - base.user_exceptions,
                      total.system_exceptions - base.system_exceptions,
                      total.latency_sum_ms - base.latency_sum_ms, total.latency_count - base.latency_count)

    def roll(self, now: float) -> None:
        """Start a new 1-minute window if the current one is over."""
        with self._lock:
            if now - self.window_start >= WINDOW_S:
                self._window_base = self.total
                self.window_start = now
                self.user_exception_gauges.clear()
                self.system_exception_gauges.clear()

    def received(self) -> None:
        """One delivery handed to the execution thread (call from that thread only)."""
        self.n_received += 1

    def received_shared(self) -> None:
        """One delivery, counted from one of several receiving threads."""
        with self._lock:
            self.n_received += 1

    def processed(self, latency_ms: float) -> None:
        """process() returned; `latency_ms` is its duration (execution thread only)."""
        self.latency_sum_ms += latency_ms
        self.n_processed += 1

    def invoked(self, now: float) -> None:
        self.last_invocation_ms = int(now * 1000)

    def user_exception(self, exc: BaseException, now: float) -> None:
        with self._lock:
            self.n_user_exceptions += 1
            self._report(self.latest_user_exceptions, self.user_exception_gauges, exc, now)

    def system_exception(self, exc: BaseException, now: float) -> None:
        with self._lock:
            self.n_system_exceptions += 1
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
            total = self.total
            avg = total.latency_sum_ms / total.latency_count if total.latency_count else 0.0
            return {
                "numReceived": total.received,
                "numSuccessfullyProcessed": total.processed,
                "numUserExceptions": total.user_exceptions,
                "numSystemExceptions": total.system_exceptions,
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

    def collect(self) -> Iterator[Metric]:
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
                gauge = GaugeMetricFamily(f"{PREFIX}{kind}_exception", f"Exception from {kind} code.",
                                          labels=[*LABELS, "error"])
                for message in gauges:
                    gauge.add_metric([*lv, message], 1.0)
                yield gauge
            user = SummaryMetricFamily(f"{PREFIX}user_metric", "Pulsar Function user defined metric",
                                       labels=[*LABELS, "metric"])
            for metric_name, (count, total_value) in sorted(s.user_metrics.items()):
                user.add_metric([*lv, metric_name], count_value=count, sum_value=total_value)
            yield user


def build_registry(collector: StatsCollector) -> CollectorRegistry:
    """A registry with our collector plus the default process/platform/GC collectors."""
    from prometheus_client import GCCollector, PlatformCollector, ProcessCollector

    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


def serve(registry: CollectorRegistry, port: int, host: str = "127.0.0.1") -> tuple[WSGIServer, int]:
    """Start the Prometheus HTTP endpoint in a daemon thread; returns (server, bound port)."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=registry)
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
