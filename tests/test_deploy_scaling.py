"""The ingress HPA scales on viewers per pod: the metric it names is the one the adapter rule serves,
from a gauge the ingress really exports."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from ingress.metrics import IngressMetrics

K8S = Path(__file__).resolve().parent.parent / "deploy" / "k8s"


def test_hpa_viewer_metric_comes_from_the_adapter_rule_and_the_ingress_gauge() -> None:
    hpa = yaml.safe_load((K8S / "ingress-hpa.yaml").read_text())
    (pods,) = [m["pods"] for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert float(pods["target"]["averageValue"]) > 0
    rules = yaml.safe_load(yaml.safe_load((K8S / "prometheus-adapter-rules.yaml").read_text())["data"]["config.yaml"])
    (rule,) = [r for r in rules["rules"] if r["name"]["as"] == pods["metric"]["name"]]
    matched = re.match(r"\^?(\w+)\$?", rule["name"]["matches"])
    assert matched is not None, rule["name"]["matches"]
    series = matched.group(1)
    metrics = IngressMetrics()
    metrics.sessions.labels("webtransport", "viewer").inc()
    exported = metrics.render().decode()
    assert f'{series}{{role="viewer",transport="webtransport"}} 1.0' in exported
    assert 'role="viewer"' in rule["metricsQuery"]
    deployment = yaml.safe_load((K8S / "ingress-deployment.yaml").read_text())
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    http_port = next(p["containerPort"] for p in container["ports"] if p["name"] == "http")
    assert annotations["prometheus.io/port"] == str(http_port) and annotations["prometheus.io/path"] == "/metrics"
