"""Prometheus series names and labels of an instance (docs/pulsar-functions.md §6)."""

from __future__ import annotations

import urllib.request

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from localrun.metrics import InstanceStats, StatsCollector, build_registry, parse_instance_metrics, serve

LABELS = {"tenant": "acme", "namespace": "acme/media", "name": "fn", "instance_id": "1", "cluster": "local",
          "fqfn": "acme/media/fn"}


def samples(stats: InstanceStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = build_registry(StatsCollector(stats, "acme", "media", "fn", "1", "local"))
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def key(name: str, **extra: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    return (name, tuple(sorted({**LABELS, **extra}.items())))


def test_official_series_and_labels() -> None:
    stats = InstanceStats(window_start=0.0)
    for _ in range(3):
        stats.received()
    stats.processed(2.0)
    stats.processed(4.0)
    stats.invoked(1700000000.5)
    stats.user_exception(ValueError("bad"), 1.0)
    stats.system_exception(RuntimeError("send failed"), 1.0)
    stats.record_metric("frames", 5)
    s = samples(stats)
    assert s[key("pulsar_function_received_total")] == 3
    assert s[key("pulsar_function_received_1min_total")] == 3
    assert s[key("pulsar_function_processed_successfully_total")] == 2
    assert s[key("pulsar_function_processed_successfully_1min_total")] == 2
    assert s[key("pulsar_function_user_exceptions_total")] == 1
    assert s[key("pulsar_function_system_exceptions_total")] == 1
    assert s[key("pulsar_function_process_latency_ms_count")] == 2
    assert s[key("pulsar_function_process_latency_ms_sum")] == 6.0
    assert s[key("pulsar_function_process_latency_ms_1min_count")] == 2
    assert s[key("pulsar_function_last_invocation")] == 1700000000500
    assert s[key("pulsar_function_user_exception", error="bad")] == 1
    assert s[key("pulsar_function_system_exception", error="send failed")] == 1
    assert s[key("pulsar_function_user_metric_count", metric="frames")] == 1
    assert s[key("pulsar_function_user_metric_sum", metric="frames")] == 5
    assert any(name.startswith("process_") for name, _ in s)  # default collectors are there too


def test_one_minute_series_reset_and_totals_do_not() -> None:
    stats = InstanceStats(window_start=0.0)
    stats.received()
    stats.user_exception(ValueError("x"), 1.0)
    stats.roll(30.0)
    assert stats.window.received == 1
    stats.roll(60.0)
    assert stats.window.received == 0 and stats.total.received == 1
    assert stats.user_exception_gauges == []


def test_exception_gauges_are_limited_per_minute() -> None:
    stats = InstanceStats(window_start=0.0)
    for i in range(8):
        stats.user_exception(ValueError(f"e{i}"), 1.0)
    assert len(stats.user_exception_gauges) == 5
    assert stats.total.user_exceptions == 8
    latest = stats.snapshot()["latestUserExceptions"]
    assert isinstance(latest, list) and len(latest) == 8


def test_http_endpoint_and_status_parser() -> None:
    stats = InstanceStats(window_start=0.0)
    stats.received()
    stats.processed(3.0)
    registry = build_registry(StatsCollector(stats, "acme", "media", "fn", "1", "local"))
    server, port = serve(registry, 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/anything", timeout=5) as response:
            parsed = parse_instance_metrics(response.read().decode())
    finally:
        server.shutdown()
    assert parsed["pulsar_function_received_total"] == 1
    assert parsed["pulsar_function_process_latency_ms_sum"] == 3.0
