"""Returns its input unchanged (bench, ack and kill tests). userConfig `sleep_ms` slows it down."""

import time


class Identity:
    def process(self, input, context):  # noqa: A002
        delay = context.get_user_config_value("sleep_ms")
        if delay:
            time.sleep(delay / 1000.0)
        return input
