"""A probe function run unchanged by `wtpulsar functions localrun` and by Pulsar's own runtime.

Each input is a command (UTF-8 text); what the function saw or did comes back on the output topic
as text, so tests/test_runtime_parity.py can compare the two runtimes message by message.
Input that IdentitySerDe does not leave as str (numeric text) is answered with its type.
  ctx            JSON of what the context tells about the message and the function
  api            JSON: pulsar.Context methods the context lacks, and public methods it has beyond them
  echo:X         X
  none           nothing (no output message)
  fail           raises (a user exception: the input is negatively acknowledged)
  failonce:K     raises the first time, answers "ok:K" when the input comes back
  count:K        incr_counter(K, 1), answers the counter
  put:K:V        put_state(K, V), answers get_state(K) as text
  del:K          del_counter(K), answers get_counter(K)
  publish:T      publishes "side" to topic T with a key, properties and an event time
  log:X          logs "logged X" at INFO and WARNING (to the log topic)
  metric:N:V     record_metric(N, V)
"""

import json

import pulsar


class ParityProbe:
    def __init__(self):
        self.failed = set()

    def process(self, input, context):  # noqa: A002 - Pulsar's parameter name
        if not isinstance(input, str):
            return f"{type(input).__name__}:{input!r}"
        cmd, _, arg = input.partition(":")
        if cmd == "ctx":
            return json.dumps({
                "key": context.get_message_key(),
                "partition_key": context.get_partition_key(),
                "ordering_key": context.get_ordering_key(),
                "eventtime": context.get_message_eventtime(),
                "properties": context.get_message_properties(),
                "topic": context.get_current_message_topic_name(),
                "partition": context.get_message_partition_index(),
                "tenant": context.get_function_tenant(),
                "namespace": context.get_function_namespace(),
                "name": context.get_function_name(),
                "instance_id": context.get_instance_id(),
                "instance_id_type": type(context.get_instance_id()).__name__,
                "function_id": context.get_function_id(),
                "function_version": context.get_function_version(),
                "user_config_map": context.get_user_config_map(),
                "greeting": context.get_user_config_value("greeting"),
                "missing_config": context.get_user_config_value("missing"),
                "input_topics": context.get_input_topics(),
                "secret": context.get_secret("token"),
                "logger": type(context.get_logger()).__name__,
            }, sort_keys=True)
        if cmd == "api":
            declared = {m for m in dir(pulsar.Context) if not m.startswith("_")}
            present = {m for m in dir(context) if not m.startswith("_") and callable(getattr(context, m, None))}
            return json.dumps({"missing": sorted(declared - present), "beyond": sorted(present - declared)})
        if cmd == "echo":
            return arg
        if cmd == "none":
            return None
        if cmd == "fail":
            raise RuntimeError("asked to fail")
        if cmd == "failonce":
            if arg not in self.failed:
                self.failed.add(arg)
                raise RuntimeError("first attempt fails")
            return "ok:" + arg
        if cmd == "count":
            context.incr_counter(arg, 1)
            return f"counter:{context.get_counter(arg)!r}"
        if cmd == "put":
            key, _, value = arg.partition(":")
            context.put_state(key, value)
            return f"state:{context.get_state(key)!r}"
        if cmd == "del":
            context.del_counter(arg)
            return f"after-del:{context.get_counter(arg)!r}"
        if cmd == "publish":
            context.publish(arg, "side", message_conf={"partition_key": "k1", "event_timestamp": 1234,
                                                       "properties": {"p": "v"}})
            return None
        if cmd == "log":
            context.get_logger().info("logged %s", arg)
            context.get_logger().warning("warned %s", arg)
            return None
        if cmd == "metric":
            name, _, value = arg.partition(":")
            context.record_metric(name, float(value))
            return "recorded:" + name
        return "unknown:" + input
