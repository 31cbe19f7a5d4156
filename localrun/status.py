"""`wtpulsar functions status`: each running instance's counters, shaped like
`pulsar-admin functions status` output (docs/pulsar-functions.md §6: numReceived,
numSuccessfullyProcessed, numUserExceptions, numSystemExceptions, averageLatency,
lastInvocationTime, numRestarts).

How running instances are found: every supervisor writes
`<run_dir>/<tenant>__<ns>__<name>/supervisor.json`, and every instance writes
`instance-<id>.json` there with its pid and metrics port; the counters come from scraping
that port. An instance whose pid is gone or whose port does not answer shows `running: false`.
"""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path
from typing import Any

from localrun.metrics import PREFIX, parse_exception_gauges, parse_instance_metrics


def _alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _scrape(port: int, timeout: float = 2.0) -> tuple[dict[str, float], dict[str, list[str]]] | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout) as response:
            text = response.read().decode("utf-8")
    except OSError:
        return None
    return parse_instance_metrics(text), parse_exception_gauges(text)


def function_status(directory: Path) -> dict[str, Any] | None:
    sup_file = directory / "supervisor.json"
    if not sup_file.is_file():
        return None
    sup = json.loads(sup_file.read_text())
    instances: list[dict[str, Any]] = []
    for entry in sup.get("instances", []):
        iid = entry["instanceId"]
        inst_file = directory / f"instance-{iid}.json"
        info = json.loads(inst_file.read_text()) if inst_file.is_file() else {}
        pid = info.get("pid") if info.get("pid") == entry.get("pid") else None
        scraped = _scrape(info["metricsPort"]) if pid and _alive(pid) and info.get("metricsPort") else None
        metrics, errors = scraped if scraped is not None else (None, {"user": [], "system": []})
        status: dict[str, Any] = {
            "running": metrics is not None,
            "error": "" if metrics is not None else (entry.get("lastExit") or "not running"),
            "numRestarts": entry.get("numRestarts", 0),
            "numReceived": 0, "numSuccessfullyProcessed": 0, "numUserExceptions": 0,
            "latestUserExceptions": [], "numSystemExceptions": 0, "latestSystemExceptions": [],
            "averageLatency": 0.0, "lastInvocationTime": 0,
            "workerId": f"localrun-{sup.get('supervisorPid')}",
            "metricsPort": info.get("metricsPort"),
            "pid": pid,
        }
        if metrics is not None:
            status["numReceived"] = int(metrics.get(f"{PREFIX}received_total", 0))
            status["numSuccessfullyProcessed"] = int(metrics.get(f"{PREFIX}processed_successfully_total", 0))
            status["numUserExceptions"] = int(metrics.get(f"{PREFIX}user_exceptions_total", 0))
            status["numSystemExceptions"] = int(metrics.get(f"{PREFIX}system_exceptions_total", 0))
            count = metrics.get(f"{PREFIX}process_latency_ms_count", 0.0)
            status["averageLatency"] = metrics.get(f"{PREFIX}process_latency_ms_sum", 0.0) / count if count else 0.0
            status["lastInvocationTime"] = int(metrics.get(f"{PREFIX}last_invocation", 0))
            # Only the messages (this minute's, at most 5) are exported, not the tracebacks.
            status["latestUserExceptions"] = [{"exceptionString": e} for e in errors["user"]]
            status["latestSystemExceptions"] = [{"exceptionString": e} for e in errors["system"]]
        instances.append({"instanceId": int(iid), "status": status})
    return {
        "fqfn": sup.get("fqfn"),
        "numInstances": len(instances),
        "numRunning": sum(1 for i in instances if i["status"]["running"]),
        "instances": instances,
    }


def collect_status(run_dir: str, fqfn: str | None = None) -> list[dict[str, Any]]:
    root = Path(run_dir)
    if not root.is_dir():
        return []
    out = []
    for directory in sorted(p for p in root.iterdir() if p.is_dir()):
        status = function_status(directory)
        if status is not None and (fqfn is None or status["fqfn"] == fqfn):
            out.append(status)
    return out
