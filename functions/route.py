"""Pulsar Function: segments, approved chat and verdicts → per-room output topics, by a routing table.

Deployed with deploy/functions/route.yaml (`className: route.RouteFunction`, MANUAL acks,
`retainKeyOrdering: true` so one stream's fragments keep their order on one instance).
The table (routing_table) comes from userConfig `routes` (default: ENVELOPE.md's per-room
topics); `tenant`/`namespace` in userConfig pick where output topics live (default: the
function's own). Each output keeps the input's payload, key, properties and event time, plus
`t_route` (docs/pulsar-functions.md §2.4: Pulsar's own output would carry none of them). A message no rule takes goes to
`unroutable` (userConfig `unroutableTopic`) with property `reason` and `source_topic`. The input
is acked only after every fan-out publish has completed (output_ack).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pulsar
from output_ack import Output, publish_all
from routing_table import RoutingConfigError, RoutingTable

FUNCTION = "route"


class RouteFunction(pulsar.Function):
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock  # seconds since epoch; tests replace it
        self._table: RoutingTable | None = None
        self._unroutable = ""

    def _setup(self, context: Any) -> RoutingTable:
        cfg = context.get_user_config_map()
        cfg = cfg if isinstance(cfg, dict) else {}  # [] when no userConfig (docs/pulsar-functions.md §1.3)
        tenant = cfg.get("tenant", context.get_function_tenant())
        namespace = cfg.get("namespace", context.get_function_namespace())
        table = RoutingTable(cfg.get("routes"), tenant, namespace)
        unroutable = cfg.get("unroutableTopic", f"persistent://{tenant}/{namespace}/unroutable")
        if not isinstance(unroutable, str) or not unroutable.startswith(("persistent://", "non-persistent://")):
            raise RoutingConfigError(f"userConfig.unroutableTopic must be a fully-qualified topic, got {unroutable!r}")
        self._unroutable = unroutable
        self._table = table
        context.get_logger().info("route: %d rules, outputs under %s", len(table.rules), table.prefix)
        return table

    def process(self, input: Any, context: Any) -> None:  # noqa: A002 - the SDK's parameter name
        table = self._table or self._setup(context)
        if isinstance(input, bytes | bytearray | memoryview):
            payload = bytes(input)
        else:  # IdentitySerDe decoded it (docs/pulsar-functions.md §1.7): a deployment without the bytes serde
            payload = str(input).encode("utf-8")
        source = context.get_current_message_topic_name()
        properties = context.get_message_properties()
        key = context.get_message_key() or None
        event_time = context.get_message_eventtime() or None
        routed = table.route(properties, source)
        stamped = {**properties, "t_route": str(int(self.clock() * 1000))}
        if routed.topics:
            outputs = [Output(t, payload, stamped, key, event_time) for t in routed.topics]
            context.record_metric("route_fanout", len(outputs))
        else:
            context.get_logger().warning("route: unroutable %s from %s: %s", context.get_message_id(), source,
                                         routed.reason)  # fmt: skip
            context.record_metric(f"route_unroutable_{routed.reason}", 1)
            props = {**stamped, "reason": routed.reason, "source_topic": source, "function": FUNCTION}
            outputs = [Output(self._unroutable, payload, props, key, event_time)]
        publish_all(context, outputs, FUNCTION)
        return None
