"""A function driven by its input text, to exercise the whole runtime from integration tests.

Input commands (UTF-8 text; IdentitySerDe gives str):
  echo:X        → returns X
  none          → returns None
  fail          → raises (user exception → nack)
  failonce:K    → raises the first time key K is seen in state, then returns "ok:K"
  bool          → returns True (IdentitySerDe cannot serialize it: system exception)
  count:K       → incr_counter(K, 1) and returns the counter
  publish:T     → publishes "side" to topic T with a key/properties/event time via message_conf
  log:X         → logs X at INFO (goes to the log topic) and print()s "printed X"
  ctx           → returns a JSON description of the context getters
  ack           → context.ack(message id, current topic), returns None
  pubcb:T       → publishes to T and acks the input in the publish callback (MANUAL pattern)
"""

import json


def _raises(getter):
    try:
        return getter()
    except AttributeError:
        return "AttributeError"


class Everything:
    def process(self, input, context):  # noqa: A002
        text = input if isinstance(input, str) else str(input)
        cmd, _, arg = text.partition(":")
        if cmd == "echo":
            return arg
        if cmd == "none":
            return None
        if cmd == "fail":
            raise RuntimeError("asked to fail")
        if cmd == "failonce":
            if context.get_counter("seen-" + arg) is None:
                context.incr_counter("seen-" + arg, 1)
                raise RuntimeError("first attempt fails")
            return "ok:" + arg
        if cmd == "bool":
            return True
        if cmd == "count":
            context.incr_counter(arg, 1)
            return str(context.get_counter(arg))
        if cmd == "publish":
            context.publish(arg, "side", message_conf={
                "partition_key": "k1", "event_timestamp": 1234, "properties": {"p": "v"}})
            return None
        if cmd == "log":
            context.get_logger().info("logged %s", arg)
            print("printed", arg)
            return None
        if cmd == "ctx":
            msgid = context.get_message_id()
            return json.dumps({
                "key": context.get_message_key(),
                "partition_key": context.get_partition_key(),
                "ordering_key": context.get_ordering_key(),
                "eventtime": context.get_message_eventtime(),
                "properties": context.get_message_properties(),
                "topic": context.get_current_message_topic_name(),
                "partition": context.get_message_partition_index(),
                "sequence_id": context.get_message_sequence_id(),
                "seq_check": (msgid.ledger_id() << 28) | msgid.entry_id(),
                "tenant": context.get_function_tenant(),
                "namespace": context.get_function_namespace(),
                "name": context.get_function_name(),
                "instance_id": context.get_instance_id(),
                "user_config_map": context.get_user_config_map(),
                "greeting": context.get_user_config_value("greeting"),
                "input_topics": context.get_input_topics(),
                "output_topic": _raises(context.get_output_topic),
                "has_num_instances": hasattr(context, "get_num_instances"),
                "secret": context.get_secret("token"),
            })
        if cmd == "ack":
            context.ack(context.get_message_id(), context.get_current_message_topic_name())
            return None
        if cmd == "pubcb":
            msgid = context.get_message_id()
            topic = context.get_current_message_topic_name()

            def acked(result, _sent_id):
                if str(result) in ("Ok", "Result.Ok"):
                    context.ack(msgid, topic)

            context.publish(arg, "out:" + text, callback=acked)
            return None
        return "unknown:" + text
