"""MANUAL guarantee: publish the result to userConfig `out`, ack the input in the publish callback
(for localrun's kill -9 test). userConfig `sleep_ms` slows it down."""

import time

import pulsar


class ManualAck:
    def process(self, input, context):  # noqa: A002
        delay = context.get_user_config_value("sleep_ms")
        if delay:
            time.sleep(delay / 1000.0)
        msgid = context.get_message_id()
        topic = context.get_current_message_topic_name()

        def done(result, _sent):
            if result == pulsar.Result.Ok:
                context.ack(msgid, topic)

        context.publish(context.get_user_config_value("out"), input, callback=done)
        return None
