"""Admin REST with Pulsar's path shapes (`/admin/v2/...`) for what this broker supports,
plus `/admin/v2/brokers/health` and Prometheus text at `/metrics`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from broker.admin_guard import check_request
from broker.names import InvalidTopicName, TopicName
from broker.partitioned_stats import aggregate as aggregate_partitions
from broker.proto import pulsar_wire_pb2 as pb
from broker.service import BrokerService, NamespaceNotFound
from broker.subscription import EXCLUSIVE, FAILOVER, SUB_TYPE_NAMES
from broker.topic import Topic
from schemas.names import InvalidName, check_local, check_part, check_role

ACTIONS = ("produce", "consume", "functions", "sources", "sinks", "packages")  # Pulsar's AuthAction
_NAME_CHECKS = {
    "tenant": lambda v: check_part("tenant", v),
    "ns": lambda v: check_part("namespace", v),
    "topic": check_local,
    "role": check_role,
}

SCHEMA_TYPES = {name.upper(): value for name, value in pb.Schema.Type.items()}
CLUSTER = "standalone"  # the one cluster, named as Pulsar standalone names its own


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"reason": reason}, status=status)


def tracks_unacked(sub: Any) -> bool:
    """Pulsar counts unacked messages per consumer only where it dispatches them one by one
    (Shared, Key_Shared); a single-active-consumer subscription reports 0."""
    return sub.sub_type not in (EXCLUSIVE, FAILOVER)


def publisher_stats(producer: Any) -> dict[str, Any]:
    connection = producer.connection
    return {"producerName": producer.name, "producerId": producer.producer_id,
            "accessMode": pb.ProducerAccessMode.Name(producer.access_mode),
            "address": getattr(connection, "peer", ""), "connectedSince": getattr(connection, "connected_since", ""),
            "clientVersion": getattr(connection, "client_version", "")}


def topic_stats(topic: Topic) -> dict[str, Any]:
    subs: dict[str, Any] = {}
    for name, sub in topic.subscriptions.items():
        counted = tracks_unacked(sub)
        subs[name] = {
            "type": SUB_TYPE_NAMES.get(sub.sub_type, "?"),
            "msgBacklog": sub.backlog(),
            "unackedMessages": len(sub.pending) if counted else 0,
            "msgOutCounter": sub.msg_out_counter,
            "msgRateExpired": 0.0,
            "expiredMessages": sub.expired_counter,
            "isDurable": sub.durable,
            "durable": sub.durable,  # Pulsar gives both names
            "bytesOutCounter": sub.bytes_out_counter,
            "markDeletePosition": "{}:{}".format(*topic.log.position_before(sub.mark_delete + 1)),
            "consumers": [
                {
                    "consumerName": c.name,
                    "clientVersion": c.connection.client_version if c.connection is not None else "",
                    "availablePermits": c.permits,
                    "unackedMessages": len(c.pending) if counted else 0,
                    "msgOutCounter": c.messages_out,
                    "bytesOutCounter": c.bytes_out,
                    "address": c.address,
                    "connectedSince": c.connected_since,
                    "isActive": sub.active is c if sub.sub_type in (EXCLUSIVE, FAILOVER) else True,
                }
                for c in sub.consumers
            ],
        }
        if sub.sub_type in (EXCLUSIVE, FAILOVER) and sub.active is not None:
            subs[name]["activeConsumerName"] = sub.active.name
    rates = getattr(topic, "rates", {})
    if not topic.name.persistent:
        return non_persistent_stats(topic, subs, rates)
    return {
        "msgRateIn": rates.get("msg_in", 0.0),
        "msgRateOut": rates.get("msg_out", 0.0),
        "msgThroughputIn": rates.get("bytes_in", 0.0),
        "msgThroughputOut": rates.get("bytes_out", 0.0),
        "msgInCounter": topic.msg_in,
        "bytesInCounter": topic.bytes_in,
        "msgOutCounter": topic.msg_out,
        "bytesOutCounter": topic.bytes_out,
        "storageSize": topic.log.size_bytes,
        "backlogSize": sum(s.backlog() for s in topic.subscriptions.values()),
        "publishers": [
            {**publisher_stats(p), "msgInCounter": p.messages_in, "bytesInCounter": p.bytes_in} for p in topic.producers.values()
        ],
        "subscriptions": subs,
        "deduplicationStatus": "Enabled" if topic.dedup_enabled else "Disabled",
    }


def non_persistent_stats(topic: Topic, subs: dict[str, Any], rates: dict[str, float]) -> dict[str, Any]:
    """Pulsar's NonPersistentTopicStats: nothing stored and no backlog, plus the drop rates
    (topic, each subscription, each publisher); no de-duplication status (docs/non-persistent.md)."""
    drop_rates = topic.drop_rates
    for name, body in subs.items():
        body["msgDropRate"] = drop_rates.get(name, 0.0)
        body.pop("markDeletePosition", None)
        body.pop("activeConsumerName", None)  # not in NonPersistentSubscriptionStats
    return {
        "msgRateIn": rates.get("msg_in", 0.0),
        "msgRateOut": rates.get("msg_out", 0.0),
        "msgThroughputIn": rates.get("bytes_in", 0.0),
        "msgThroughputOut": rates.get("bytes_out", 0.0),
        "msgDropRate": rates.get("msg_drop", 0.0),
        "msgInCounter": topic.msg_in,
        "bytesInCounter": topic.bytes_in,
        "msgOutCounter": topic.msg_out,
        "bytesOutCounter": topic.bytes_out,
        "storageSize": 0,
        "backlogSize": 0,
        "publishers": [
            {**publisher_stats(p), "msgInCounter": p.messages_in, "bytesInCounter": p.bytes_in, "msgDropRate": 0.0}
            for p in topic.producers.values()
        ],
        "subscriptions": subs,
    }


class _Collector:
    def __init__(self, service: BrokerService) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        # Pulsar's topic-level series carry cluster, namespace and topic (and subscription) labels.
        labels = ["cluster", "namespace", "topic"]
        msg_in = CounterMetricFamily("pulsar_in_messages", "Messages published to the topic", labels=labels)
        bytes_in = CounterMetricFamily("pulsar_in_bytes", "Bytes published to the topic", labels=labels)
        msg_out = CounterMetricFamily("pulsar_out_messages", "Messages delivered from the topic", labels=labels)
        bytes_out = CounterMetricFamily("pulsar_out_bytes", "Bytes delivered from the topic", labels=labels)
        rate_in = GaugeMetricFamily("pulsar_rate_in", "Messages/s published (last second)", labels=labels)
        rate_out = GaugeMetricFamily("pulsar_rate_out", "Messages/s delivered (last second)", labels=labels)
        storage = GaugeMetricFamily("pulsar_storage_size", "Bytes stored for the topic", labels=labels)
        producers = GaugeMetricFamily("pulsar_producers_count", "Connected producers", labels=labels)
        consumers = GaugeMetricFamily("pulsar_consumers_count", "Connected consumers", labels=labels)
        backlog = GaugeMetricFamily("pulsar_subscription_back_log", "Unacknowledged messages per subscription", labels=[*labels, "subscription"])
        for key, topic in self.service.topics.items():
            rates = getattr(topic, "rates", {})
            values = [CLUSTER, "/".join(key.split("://", 1)[-1].split("/")[:2]), key]
            msg_in.add_metric(values, topic.msg_in)
            bytes_in.add_metric(values, topic.bytes_in)
            msg_out.add_metric(values, topic.msg_out)
            bytes_out.add_metric(values, topic.bytes_out)
            rate_in.add_metric(values, rates.get("msg_in", 0.0))
            rate_out.add_metric(values, rates.get("msg_out", 0.0))
            storage.add_metric(values, topic.log.size_bytes)
            producers.add_metric(values, len(topic.producers))
            consumers.add_metric(values, len(topic.consumers()))
            for name, sub in topic.subscriptions.items():
                backlog.add_metric([*values, name], sub.backlog())
        connections = GaugeMetricFamily("pulsar_active_connections", "Open client connections")
        connections.add_metric([], len(self.service.connections))
        topics = GaugeMetricFamily("pulsar_topics_count", "Loaded topics")
        topics.add_metric([], len(self.service.topics))
        yield from (msg_in, bytes_in, msg_out, bytes_out, rate_in, rate_out, storage, producers, consumers, backlog, connections, topics)


def build_app(server: Any, listen_host: str = "127.0.0.1", listen_port: list[int] | None = None) -> web.Application:
    """`listen_port` is a one-item list so a port picked by the OS (0) can be filled in after binding."""
    bound = listen_port if listen_port is not None else [8080]
    service: BrokerService = server.service
    config = service.config
    superusers = frozenset(config.superuser_roles)

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        refusal, _role = check_request(request.headers, request.path, listen_host, bound[0], config.auth_token_secret, superusers)
        if refusal is not None:
            return _error(refusal.status, refusal.reason)
        # Every name in the path passes the one name rule before any handler sees it (docs/names.md).
        for key, check in _NAME_CHECKS.items():
            if key in request.match_info:
                try:
                    check(request.match_info[key])
                except InvalidName as exc:
                    return _error(412, str(exc))
        try:
            return await handler(request)
        except NamespaceNotFound as exc:
            return _error(404, str(exc) or "Namespace does not exist")

    def permissions(namespace: str, topic: str | None = None) -> dict[str, list[str]]:
        policy = service.namespaces[namespace]
        if topic is None:
            return dict(policy.get("permissions", {}))
        return dict(policy.get("topic_permissions", {}).get(topic, {}))

    async def actions_from(request: web.Request) -> list[str] | web.Response:
        body = await body_json(request)
        if not isinstance(body, list) or not all(isinstance(a, str) for a in body):
            return _error(400, f"body must be a JSON list of actions out of {', '.join(ACTIONS)}")
        unknown = [a for a in body if a not in ACTIONS]
        if unknown:
            return _error(400, f"unknown action(s) {unknown}; known: {', '.join(ACTIONS)}")
        return sorted(set(body))
    registry = CollectorRegistry()
    registry.register(_Collector(service))
    routes = web.RouteTableDef()

    def topic_from(request: web.Request, domain: str | None = None) -> TopicName:
        info = request.match_info
        return TopicName.parse(f"{domain or info['domain']}://{info['tenant']}/{info['ns']}/{info['topic']}")

    async def body_json(request: web.Request) -> Any:
        text = await request.text()
        if not text.strip():
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise web.HTTPBadRequest(text=json.dumps({"reason": f"request body is not JSON: {exc}"}), content_type="application/json") from exc

    @routes.get("/admin/v2/brokers/health")
    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    @routes.get("/metrics")
    @routes.get("/metrics/")
    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(registry), content_type="text/plain", charset="utf-8")

    @routes.get("/admin/v2/tenants")
    async def tenants(request: web.Request) -> web.Response:
        return web.json_response(sorted(service.tenants))

    @routes.get("/admin/v2/clusters")
    async def clusters(request: web.Request) -> web.Response:
        return web.json_response([CLUSTER])

    @routes.put("/admin/v2/tenants/{tenant}")
    async def create_tenant(request: web.Request) -> web.Response:  # the name was checked by guard()
        # Pulsar checks the TenantInfo body before anything else (412 with these reasons).
        info = await body_json(request) if request.can_read_body else None
        if not isinstance(info, dict):
            return _error(412, "TenantInfo is null")
        allowed = info.get("allowedClusters")
        if not isinstance(allowed, list):
            return _error(412, "Clusters cannot be null")
        if any(cluster != CLUSTER for cluster in allowed):
            return _error(412, "Clusters do not exist")
        if not service.create_tenant(request.match_info["tenant"]):
            return _error(409, "Tenant already exists")
        return web.Response(status=204)

    @routes.delete("/admin/v2/tenants/{tenant}")
    async def delete_tenant(request: web.Request) -> web.Response:
        if not service.delete_tenant(request.match_info["tenant"]):
            return _error(409, "Tenant does not exist or still has namespaces")
        return web.Response(status=204)

    @routes.get("/admin/v2/namespaces/{tenant}")
    async def namespaces(request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if tenant not in service.tenants:
            return _error(404, "Tenant does not exist")
        return web.json_response(sorted(ns for ns in service.namespaces if ns.split("/")[0] == tenant))

    @routes.put("/admin/v2/namespaces/{tenant}/{ns}")
    async def create_namespace(request: web.Request) -> web.Response:
        namespace = f"{request.match_info['tenant']}/{request.match_info['ns']}"
        if request.match_info["tenant"] not in service.tenants:
            return _error(404, "Tenant does not exist")
        if not service.create_namespace(namespace):
            return _error(409, "Namespace already exists")
        return web.Response(status=204)

    @routes.delete("/admin/v2/namespaces/{tenant}/{ns}")
    async def delete_namespace(request: web.Request) -> web.Response:
        namespace = f"{request.match_info['tenant']}/{request.match_info['ns']}"
        if namespace not in service.namespaces:
            return _error(404, "Namespace does not exist")
        if not service.delete_namespace(namespace):
            return _error(409, "Cannot delete non empty namespace")
        return web.Response(status=204)

    @routes.get("/admin/v2/namespaces/{tenant}/{ns}/deduplication")
    async def get_dedup(request: web.Request) -> web.Response:
        namespace = f"{request.match_info['tenant']}/{request.match_info['ns']}"
        if namespace not in service.namespaces:
            return _error(404, "Namespace does not exist")
        return web.json_response(service.namespaces[namespace].get("deduplication"))

    @routes.post("/admin/v2/namespaces/{tenant}/{ns}/deduplication")
    async def set_dedup(request: web.Request) -> web.Response:
        namespace = f"{request.match_info['tenant']}/{request.match_info['ns']}"
        value = await body_json(request)
        if not isinstance(value, bool):
            return _error(400, "body must be true or false")
        try:
            service.set_namespace_policy(namespace, "deduplication", value)
        except NamespaceNotFound:
            return _error(404, "Namespace does not exist")
        return web.Response(status=204)

    @routes.delete("/admin/v2/namespaces/{tenant}/{ns}/deduplication")
    async def remove_dedup(request: web.Request) -> web.Response:
        namespace = f"{request.match_info['tenant']}/{request.match_info['ns']}"
        try:
            service.set_namespace_policy(namespace, "deduplication", None)
        except NamespaceNotFound:
            return _error(404, "Namespace does not exist")
        return web.Response(status=204)

    def namespace_of(request: web.Request) -> str:
        namespace = f"{request.match_info['tenant']}/{request.match_info['ns']}"
        if namespace not in service.namespaces:
            raise NamespaceNotFound(f"Namespace {namespace} does not exist")
        return namespace

    @routes.get("/admin/v2/namespaces/{tenant}/{ns}/permissions")
    async def get_permissions(request: web.Request) -> web.Response:
        return web.json_response(permissions(namespace_of(request)))

    @routes.post("/admin/v2/namespaces/{tenant}/{ns}/permissions/{role}")
    async def grant(request: web.Request) -> web.Response:
        namespace = namespace_of(request)
        actions = await actions_from(request)
        if isinstance(actions, web.Response):
            return actions
        granted = permissions(namespace)
        granted[request.match_info["role"]] = actions
        service.set_namespace_policy(namespace, "permissions", granted)
        return web.Response(status=204)

    @routes.delete("/admin/v2/namespaces/{tenant}/{ns}/permissions/{role}")
    async def revoke(request: web.Request) -> web.Response:
        namespace = namespace_of(request)
        granted = permissions(namespace)
        if granted.pop(request.match_info["role"], None) is None:
            return _error(404, f"role {request.match_info['role']!r} has no permissions on {namespace}")
        service.set_namespace_policy(namespace, "permissions", granted)
        return web.Response(status=204)

    @routes.get(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/permissions")
    async def get_topic_permissions(request: web.Request) -> web.Response:
        name = topic_from(request)
        return web.json_response(permissions(namespace_of(request), str(name)))

    @routes.post(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/permissions/{role}")
    async def grant_topic(request: web.Request) -> web.Response:
        name = topic_from(request)
        namespace = namespace_of(request)
        actions = await actions_from(request)
        if isinstance(actions, web.Response):
            return actions
        every = dict(service.namespaces[namespace].get("topic_permissions", {}))
        every[str(name)] = {**every.get(str(name), {}), request.match_info["role"]: actions}
        service.set_namespace_policy(namespace, "topic_permissions", every)
        return web.Response(status=204)

    @routes.delete(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/permissions/{role}")
    async def revoke_topic(request: web.Request) -> web.Response:
        name = topic_from(request)
        namespace = namespace_of(request)
        every = dict(service.namespaces[namespace].get("topic_permissions", {}))
        roles = dict(every.get(str(name), {}))
        if roles.pop(request.match_info["role"], None) is None:
            return _error(404, f"role {request.match_info['role']!r} has no permissions on {name}")
        every[str(name)] = roles
        service.set_namespace_policy(namespace, "topic_permissions", every)
        return web.Response(status=204)

    @routes.get(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}")
    async def list_topics(request: web.Request) -> web.Response:
        namespace = f"{request.match_info['tenant']}/{request.match_info['ns']}"
        if namespace not in service.namespaces:
            return _error(404, "Namespace does not exist")
        mode = 0 if request.match_info["domain"] == "persistent" else 1
        return web.json_response(service.topics_of_namespace(namespace, mode))

    @routes.get(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/partitioned")
    async def list_partitioned(request: web.Request) -> web.Response:
        namespace_of(request)
        prefix = f"{request.match_info['domain']}://{request.match_info['tenant']}/{request.match_info['ns']}/"
        return web.json_response(sorted(k for k in service.partitioned if k.startswith(prefix)))

    @routes.put(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/partitions")
    async def create_partitioned(request: web.Request) -> web.Response:
        try:
            name = topic_from(request)
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        count = await body_json(request)
        if not isinstance(count, int) or isinstance(count, bool):
            return _error(400, f"number of partitions must be an integer, not {json.dumps(count)[:40]}")
        if count < 1 or count > 10_000:
            return _error(412, "number of partitions must be an integer from 1 to 10000")
        if str(name) in service.partitioned or service.topic_exists(name):
            return _error(409, "This topic already exists")
        try:
            service.create_partitioned(name, count)
        except NamespaceNotFound as exc:
            return _error(404, str(exc))
        return web.Response(status=204)

    @routes.get(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/partitions")
    async def get_partitioned(request: web.Request) -> web.Response:
        try:
            name = topic_from(request)
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        namespace_of(request)
        # Pulsar's PartitionedTopicMetadata also says whether the topic is being deleted.
        return web.json_response({"partitions": service.partitioned.get(str(name), 0), "deleted": False})

    @routes.delete(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/partitions")
    async def delete_partitioned(request: web.Request) -> web.Response:
        try:
            name = topic_from(request)
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        namespace_of(request)
        if not service.delete_partitioned(name):
            return _error(404, "Partitioned topic does not exist")
        return web.Response(status=204)

    @routes.put(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}")
    async def create_topic(request: web.Request) -> web.Response:
        try:
            name = topic_from(request)
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        if service.topic_exists(name) or str(name) in service.partitioned:
            return _error(409, "This topic already exists")
        try:
            service.get_topic(name, create=True)
        except NamespaceNotFound as exc:
            return _error(404, str(exc))
        return web.Response(status=204)

    @routes.delete(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}")
    async def delete_topic(request: web.Request) -> web.Response:
        try:
            name = topic_from(request)
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        namespace_of(request)
        try:
            deleted = service.delete_topic(name, force=request.query.get("force") == "true")
        except RuntimeError as exc:
            return _error(412, str(exc))
        return web.Response(status=204) if deleted else _error(404, "Topic not found")

    @routes.get(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/stats")
    async def stats(request: web.Request) -> web.Response:
        try:
            name = topic_from(request)
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        topic = service.get_topic(name, create=False) if name.namespace_name in service.namespaces else None
        if topic is None:
            return _error(404, f"Topic {name} not found")  # Pulsar's reason, naming the topic
        return web.json_response(topic_stats(topic))

    @routes.get(r"/admin/v2/{domain:persistent|non-persistent}/{tenant}/{ns}/{topic}/partitioned-stats")
    async def partitioned_stats(request: web.Request) -> web.Response:
        try:
            name = topic_from(request)
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        count = service.partitioned.get(str(name))
        if count is None:
            return _error(404, "Partitioned topic not found")
        parts = {}
        for i in range(count):
            topic = service.get_topic(name.partition(i), create=True)
            assert topic is not None
            parts[str(name.partition(i))] = topic_stats(topic)
        per_partition = request.query.get("perPartition", "true").lower() != "false"
        return web.json_response(aggregate_partitions(count, parts, per_partition))

    @routes.get(r"/admin/v2/schemas/{tenant}/{ns}/{topic}/schema")
    async def get_schema(request: web.Request) -> web.Response:
        try:
            name = topic_from(request, "persistent")
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        latest = service.schema_registry(name).latest
        if latest is None:
            return _error(404, "Schema not found")
        return web.json_response(
            {"version": latest.version, "type": pb.Schema.Type.Name(latest.type).upper(), "timestamp": latest.timestamp,
             "data": latest.data.decode("utf-8", "replace"), "properties": dict(latest.properties)}
        )

    @routes.post(r"/admin/v2/schemas/{tenant}/{ns}/{topic}/schema")
    async def post_schema(request: web.Request) -> web.Response:
        try:
            name = topic_from(request, "persistent")
        except InvalidTopicName as exc:
            return _error(412, str(exc))
        body = await body_json(request)
        if not isinstance(body, dict) or "type" not in body:
            return _error(400, 'body must be {"type": ..., "schema": ..., "properties": {...}}')
        type_value = SCHEMA_TYPES.get(str(body["type"]).upper())
        if type_value is None:
            return _error(400, f"unknown schema type {body['type']!r}")
        schema = pb.Schema(name=str(name), schema_data=str(body.get("schema", "")).encode(), type=type_value)
        for key, value in (body.get("properties") or {}).items():
            schema.properties.add(key=str(key), value=str(value))
        from broker.schemas import IncompatibleSchema

        try:
            version, added = service.schema_registry(name).get_or_add(schema)
        except IncompatibleSchema as exc:
            return _error(409, str(exc))
        if added:
            service.save_schemas(name)
        return web.json_response({"version": {"version": version.version}})  # Pulsar's PostSchemaResponse

    app = web.Application(middlewares=[guard])
    app.add_routes(routes)
    return app


async def start_admin_http(server: Any, host: str, port: int) -> web.AppRunner:
    bound = [port]
    app = build_app(server, host, bound)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    if port == 0 and runner.addresses:
        bound[0] = int(runner.addresses[0][1])
    return runner


def update_rates(service: BrokerService, state: dict[str, Any]) -> None:
    """Per-topic rates over the last interval (called about once a second)."""
    now = time.monotonic()
    last = state.get("time")
    state["time"] = now
    for key, topic in service.topics.items():
        counters = (topic.msg_in, topic.bytes_in, topic.msg_out, topic.bytes_out, topic.msg_dropped)
        previous = state.get(key, (0, 0, 0, 0, 0))  # a topic new since the last call: all it did counts
        state[key] = counters
        if last is None or now <= last:
            continue
        span = now - last
        topic.rates = {  # type: ignore[attr-defined]  # the admin server hangs its rate figures on the topic
            "msg_in": (counters[0] - previous[0]) / span,
            "bytes_in": (counters[1] - previous[1]) / span,
            "msg_out": (counters[2] - previous[2]) / span,
            "bytes_out": (counters[3] - previous[3]) / span,
            "msg_drop": (counters[4] - previous[4]) / span,
        }
        if not topic.name.persistent:
            topic.drop_rates = {
                name: (sub.msg_drop_counter - state.get(f"{key} {name}", 0)) / span
                for name, sub in topic.subscriptions.items()
            }
    for key, topic in service.topics.items():
        if not topic.name.persistent:
            for name, sub in topic.subscriptions.items():
                state[f"{key} {name}"] = sub.msg_drop_counter
