"""`GET .../partitioned-stats`: the partitions' topic stats and their sum, shaped as Pulsar's
PartitionedTopicStats (the topic-stats fields summed over partitions, subscriptions merged by name
with their consumers side by side, publishers merged by producer name, `metadata` with the
partition count; `partitions` only when asked with `perPartition`, which Pulsar defaults to true).
"""

from __future__ import annotations

from typing import Any

SUMMED = ("msgRateIn", "msgRateOut", "msgThroughputIn", "msgThroughputOut", "msgInCounter", "bytesInCounter",
          "msgOutCounter", "bytesOutCounter", "storageSize", "backlogSize", "msgDropRate")
SUB_SUMMED = ("msgBacklog", "unackedMessages", "msgOutCounter", "bytesOutCounter", "msgRateExpired", "expiredMessages", "msgDropRate")
PUBLISHER_SUMMED = ("msgInCounter", "bytesInCounter", "msgDropRate")


def _add(into: dict[str, Any], item: dict[str, Any], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key in item:
            into[key] = into.get(key, 0) + item[key]


def aggregate(count: int, parts: dict[str, dict[str, Any]], per_partition: bool = True) -> dict[str, Any]:
    total: dict[str, Any] = {}
    publishers: dict[str, dict[str, Any]] = {}
    subscriptions: dict[str, dict[str, Any]] = {}
    for stats in parts.values():
        _add(total, stats, SUMMED)
        for publisher in stats["publishers"]:
            merged = publishers.setdefault(publisher["producerName"], {"producerName": publisher["producerName"],
                                                                       "accessMode": publisher["accessMode"]})
            _add(merged, publisher, PUBLISHER_SUMMED)
        for name, sub in stats["subscriptions"].items():
            merged = subscriptions.setdefault(name, {"type": sub["type"], "isDurable": sub["isDurable"], "durable": sub["durable"],
                                                     "consumers": []})
            _add(merged, sub, SUB_SUMMED)
            merged["consumers"] += sub["consumers"]
    body = {**total, "publishers": list(publishers.values()), "subscriptions": subscriptions,
            "metadata": {"partitions": count, "deleted": False}}
    if per_partition:
        body["partitions"] = parts
    return body
